"""The sampler, the recognizer and jitted NSNet inference, sharded and not."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nsnet_jax.config_checks import validate_config
from nsnet_jax.inference import (
    make_all_frames_fn,
    make_inference_fn,
    make_recognize_fn,
    oracle_indices,
    random_indices,
    uniform_indices,
)
from nsnet_jax.models.nsnet import NSNet, build_model, init_variables
from nsnet_jax.models.recognizer import Recognizer
from nsnet_jax.models.sampler import NSNetSampler, fuse_scores
from nsnet_jax.sharding import batch_sharding, data_mesh, replicate
from tests.tiny import tiny_config


def _frames(key, b, t, size):
    return jax.random.randint(jax.random.key(key), (b, t, size, size, 3), 0, 256).astype(jnp.uint8)


@pytest.mark.parametrize("kernel", [3, 5])
def test_conv1d_context_sees_temporal_kernel_frames(kernel):
    from nsnet_jax.models.sampler import TemporalContext

    context = TemporalContext("conv1d", kernel=kernel)
    h = jax.random.normal(jax.random.key(0), (1, 9, 16))
    variables = context.init(jax.random.key(1), h)
    moved = h.at[0, 4].add(1.0)
    changed = np.abs(context.apply(variables, moved) - context.apply(variables, h)).max(-1)[0]
    reach = kernel // 2
    np.testing.assert_array_equal(changed > 0, np.abs(np.arange(9) - 4) <= reach)


@pytest.mark.parametrize("mode, names", [("conv1d", {"conv"}), ("transformer", {"attn", "mlp_in"})])
def test_stacked_context_layers_reach_further_and_keep_the_first_layers_names(mode, names):
    from nsnet_jax.models.sampler import TemporalContext

    h = jax.random.normal(jax.random.key(0), (1, 9, 16))
    one = TemporalContext(mode, kernel=3).init(jax.random.key(1), h)["params"]
    two_layers = TemporalContext(mode, kernel=3, layers=2)
    two = two_layers.init(jax.random.key(1), h)["params"]
    assert names <= set(one) and set(one) < set(two)  # a 1-layer checkpoint loads by name
    assert {n + "_2" for n in names} <= set(two)
    if mode == "conv1d":  # two 3-frame layers: each frame sees two neighbours on each side
        moved = h.at[0, 4].add(1.0)
        diff = two_layers.apply({"params": two}, moved) - two_layers.apply({"params": two}, h)
        changed = np.abs(diff).max(-1)[0]
        np.testing.assert_array_equal(changed > 0, np.abs(np.arange(9) - 4) <= 2)


def test_temporal_layers_are_checked():
    config = tiny_config(model__sampler__temporal_layers=0)
    with pytest.raises(ValueError, match="temporal_layers=0 must be an int >= 1"):
        validate_config(config)


@pytest.mark.parametrize("temporal", ["none", "conv1d", "transformer"])
def test_sampler_outputs_for_each_temporal_head(temporal):
    sampler = NSNetSampler(backbone="patch_cnn", width=0.25, video_classes=6, temporal=temporal)
    x = _frames(0, 2, 5, 16)
    out, _ = jax.eval_shape(sampler.init_with_output, jax.random.key(0), x)
    assert out["features"].shape == (2, 5, 32)
    for key in ("frame_logits", "attn_logits", "scores"):
        assert out[key].shape == (2, 5)
    assert out["salient_logits"].shape == out["nonsalient_logits"].shape == (2, 6)


def test_fusion_rules_by_hand():
    f = jnp.array([[0.0, 2.0, -1.0]])
    g = jnp.array([[1.0, -1.0, 0.0]])
    sf, a = jax.nn.sigmoid(f), jax.nn.sigmoid(g)
    np.testing.assert_allclose(fuse_scores(f, g, "sum", 0.5), sf + 0.5 * a, rtol=1e-6)
    np.testing.assert_allclose(fuse_scores(f, g, "product", 1.0), sf * a, rtol=1e-6)
    # ranks of s_f: [1, 2, 0] / 2; ranks of a: [2, 0, 1] / 2
    np.testing.assert_allclose(fuse_scores(f, g, "rank", 1.0), [[1.5, 1.0, 0.5]], rtol=1e-6)
    with pytest.raises(ValueError, match="fusion='max'"):
        fuse_scores(f, g, "max", 1.0)


@pytest.mark.parametrize("aggregation", ["mean_logits", "mean_softmax", "maxpool_mlp"])
def test_recognizer_aggregations(aggregation):
    rec = Recognizer(backbone="patch_cnn", num_classes=4, width=0.25, aggregation=aggregation,
                     mlp_dim=8)  # fmt: skip
    x = _frames(1, 2, 3, 16)
    out, variables = jax.jit(rec.init_with_output)(jax.random.key(0), x)
    assert out["logits"].shape == (2, 4) and out["frame_logits"].shape == (2, 3, 4)
    if aggregation == "mean_logits":
        np.testing.assert_allclose(out["logits"], out["frame_logits"].mean(1), rtol=1e-5)
    elif aggregation == "mean_softmax":
        probs = jax.nn.softmax(out["frame_logits"], -1).mean(1)
        np.testing.assert_allclose(jnp.exp(out["logits"]), probs, rtol=1e-4, atol=1e-6)
    else:
        assert "mlp_hidden" in variables["params"] and "mlp_bn" in variables["batch_stats"]
        # pool_share: each frame's hidden units that win the max-pool, times the positive weights
        out, state = rec.apply(variables, x, capture_intermediates=lambda m, _: m.name == "mlp_bn")
        h = np.maximum(np.asarray(state["intermediates"]["mlp_bn"]["__call__"][0]), 0)
        h = h.reshape(2, 3, -1)
        w = np.maximum(np.asarray(variables["params"]["mlp_out"]["kernel"]), 0)
        won = np.where(h == h.max(1, keepdims=True), h, 0)
        share = np.asarray(out["pool_share"])
        np.testing.assert_allclose(share, np.einsum("bkd,dc->bkc", won, w), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(share.sum(1), h.max(1) @ w, rtol=1e-5, atol=1e-6)
        assert (share.argmax(1) != share.argmin(1)).any()  # frames differ: a real ranking
    if aggregation != "maxpool_mlp":
        assert "pool_share" not in out


@pytest.fixture(scope="module")
def tiny_model():
    config = tiny_config()
    model = build_model(config)
    variables = jax.jit(lambda k: init_variables(model, config, k, batch_size=8))(jax.random.key(0))
    lo = _frames(2, 8, 6, 32)
    hi = _frames(3, 8, 6, 32)
    return config, model, variables, lo, hi


def test_inference_matches_manual_composition(tiny_model):
    config, model, variables, lo, hi = tiny_model
    out = make_inference_fn(model)(variables, lo, hi)
    scores = model.apply(variables, lo, method=NSNet.sample)["scores"]
    expected_idx = np.sort(np.argsort(-np.asarray(scores), axis=1, kind="stable")[:, :2], axis=1)
    np.testing.assert_array_equal(out["indices"], expected_idx)
    logits = make_recognize_fn(model)(variables, hi, out["indices"])
    np.testing.assert_allclose(out["logits"], logits, rtol=1e-5, atol=1e-5)
    assert make_all_frames_fn(model)(variables, hi).shape == (8, config.data.num_classes)


def test_inference_on_8_device_mesh_keeps_batch_sharding_and_matches_1_device(tiny_model):
    assert jax.device_count() == 8, "tests/conftest.py should give 8 CPU devices"
    _, model, variables, lo, hi = tiny_model
    single = make_inference_fn(model)(variables, lo, hi)
    mesh = data_mesh()
    data = batch_sharding(mesh)
    sharded_vars = replicate(variables, mesh)
    out = make_inference_fn(model, mesh)(
        sharded_vars, jax.device_put(lo, data), jax.device_put(hi, data)
    )
    for key in ("logits", "indices", "scores"):
        assert out[key].sharding.spec[0] == "data", key
        assert out[key].sharding.num_devices == 8
    np.testing.assert_array_equal(out["indices"], single["indices"])
    np.testing.assert_allclose(out["logits"], single["logits"], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "lo_shape,hi_shape,dtype,match",
    [
        ((2, 6, 32, 32), (2, 6, 32, 32, 3), jnp.uint8, r"sampler_frames must have shape"),
        ((2, 6, 32, 32, 3), (2, 5, 32, 32, 3), jnp.uint8, r"frames has 5 frames"),
        ((2, 6, 32, 32, 3), (2, 6, 32, 32, 3), jnp.int32, r"uint8 or floating"),
        ((2, 6, 32, 32, 3), (3, 6, 32, 32, 3), jnp.uint8, r"disagree on the batch size"),
    ],
)
def test_bad_inputs_fail_before_tracing_with_named_fields(tiny_model, lo_shape, hi_shape, dtype,
                                                          match):  # fmt: skip
    _, model, variables, _, _ = tiny_model
    with pytest.raises(ValueError, match=match):
        make_inference_fn(model)(variables, jnp.zeros(lo_shape, dtype), jnp.zeros(hi_shape, dtype))


def test_k_larger_than_t_is_rejected_by_the_config_check():
    with pytest.raises(ValueError, match=r"num_select=7 must be an int in \[1, .*num_frames=6\]"):
        validate_config(tiny_config(model__num_select=7))


def test_baseline_indices():
    np.testing.assert_array_equal(uniform_indices(2, 16, 4), [[2, 6, 10, 14]] * 2)
    rng = np.random.default_rng(0)
    idx = random_indices(rng, 3, 16, 5)
    assert idx.shape == (3, 5) and all(len(set(row)) == 5 for row in idx)
    assert (np.diff(idx, axis=1) > 0).all()
    evidence = np.zeros((2, 8), bool)
    evidence[0, [5]] = True
    evidence[1, [1, 2, 3]] = True
    oracle = oracle_indices(evidence, 2, rng)
    assert 5 in oracle[0] and set(oracle[1]) <= {1, 2, 3}


def test_an_eval_batch_the_mesh_cannot_split_names_eval_batch_size(tmp_path):
    from nsnet_jax.pipeline_run import train_and_evaluate

    config = tiny_config(eval_batch_size=12)  # the pytest session has 8 CPU devices
    with pytest.raises(ValueError, match=r"config\.eval_batch_size=12 is not divisible .* 8 dev"):
        train_and_evaluate(config, str(tmp_path))


def test_spatial_pool_modes_by_hand():
    from nsnet_jax.models.layers import spatial_pool

    x = jnp.arange(8.0).reshape(1, 2, 2, 2)  # channel 0: 0, 2, 4, 6; channel 1: 1, 3, 5, 7
    np.testing.assert_allclose(spatial_pool(x, "mean"), [[3.0, 4.0]])
    np.testing.assert_allclose(spatial_pool(x, "max"), [[6.0, 7.0]])
    np.testing.assert_allclose(spatial_pool(x, "mean_max"), [[9.0, 11.0]])
    with pytest.raises(ValueError, match="spatial_pool='sum' is not one of"):
        spatial_pool(x, "sum")


@pytest.mark.parametrize(
    "backbone", ["patch_cnn", "mobilenet_v2", "resnet18", "efficientnet_lite0", "fused_mbconv"]
)
def test_every_backbone_pools_its_last_map_as_configured(backbone):
    """Pooling has no parameters: the same weights give mean <= max and mean_max = mean + max."""
    from nsnet_jax.models.registry import create_backbone

    x = jax.random.normal(jax.random.key(0), (2, 64, 64, 3))  # stride 32: a 2x2 last map
    width = {} if backbone.startswith("efficientnet") else {"width": 0.25}

    def features(pool, variables=None):
        net = create_backbone(backbone, num_classes=None, spatial_pool=pool, **width)
        variables = variables or net.init(jax.random.key(1), x)
        return net.apply(variables, x), variables

    mean, variables = features("mean")
    peak, _ = features("max", variables)
    both, _ = features("mean_max", variables)
    assert mean.shape == peak.shape == both.shape
    assert np.all(np.asarray(peak) >= np.asarray(mean) - 1e-6) and not np.allclose(peak, mean)
    np.testing.assert_allclose(both, mean + peak, rtol=1e-5, atol=1e-5)


def test_sampler_and_recognizer_take_spatial_pool_from_the_config():
    config = tiny_config(
        model__sampler__spatial_pool="max", model__recognizer__spatial_pool="mean_max"
    )
    validate_config(config)
    model = build_model(config)
    assert model.sampler.spatial_pool == "max" and model.recognizer.spatial_pool == "mean_max"
