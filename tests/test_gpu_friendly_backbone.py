"""fused_mbconv: the sampler backbone without depthwise convolutions (models/fused_mbconv.py).

It exists for GPU speed, which CPUs cannot measure; what holds here: it costs no more multiply-adds
than MobileNetV2 at ActivityNet's 128 px, XLA sees no grouped convolution in it, and it works and
learns wherever a backbone is used.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from nsnet_jax.bench.common import synthetic_train_batch
from nsnet_jax.config_checks import validate_config
from nsnet_jax.costs.flops import xla_flops
from nsnet_jax.inference import make_inference_fn
from nsnet_jax.models import BACKBONES, create_backbone, normalize_images
from nsnet_jax.models.nsnet import build_model, init_variables
from nsnet_jax.train.step import build_stage_optimizer, create_train_state, make_train_step
from tests.tiny import tiny_config

NAME = "fused_mbconv"
# Initialisation compiles ~5x faster on CPU with this key than with the default threefry one;
# which random bits the weights start from does not matter to these checks.
INIT_KEY = jax.random.key(0, impl="unsafe_rbg")


def _lowered(name: str, size: int, **kw):
    """The jitted feature extractor lowered on abstract [16, size, size, 3] frames."""
    net = create_backbone(name, num_classes=None, depthwise_impl="grouped", **kw)
    x = jax.ShapeDtypeStruct((16, size, size, 3), jnp.float32)
    variables = jax.eval_shape(net.init, jax.random.key(0), x)
    return jax.jit(net.apply), variables, x


def _group_counts(name: str, size: int) -> list[int]:
    jitted, variables, x = _lowered(name, size)
    text = jitted.lower(variables, x).as_text()
    return [int(g) for g in re.findall(r"feature_group_count = (\d+)", text)]


@pytest.mark.parametrize("width,dim", [(1.0, 1280), (0.25, 1280), (1.5, 1920)])
def test_features_and_logits_have_the_documented_shapes(width, dim):
    x = jnp.zeros((3, 64, 64, 3))
    net = create_backbone(NAME, num_classes=None, width=width)
    out, _ = jax.eval_shape(net.init_with_output, jax.random.key(0), x)
    assert out.shape == (3, dim) == (3, net.feature_dim)
    logits, _ = jax.eval_shape(
        create_backbone(NAME, num_classes=7, width=width).init_with_output, jax.random.key(0), x
    )
    assert logits.shape == (3, 7)


def test_registered_without_depthwise_and_accepted_by_the_config_checks():
    assert not BACKBONES[NAME].has_depthwise
    # create_backbone passes depthwise_impl only to backbones that have depthwise convolutions
    create_backbone(NAME, num_classes=None, depthwise_impl="shifted")
    validate_config(tiny_config(model__sampler__backbone=NAME, model__recognizer__backbone=NAME))


def test_no_more_macs_per_frame_than_mobilenet_v2_at_128_px():
    def gmacs(name):
        jitted, variables, x = _lowered(name, 128)
        return xla_flops(jitted, variables, x) / 2e9 / 16

    fused, mobilenet = gmacs(NAME), gmacs("mobilenet_v2")
    assert 0.7 * mobilenet < fused <= mobilenet, (fused, mobilenet)


def test_its_program_has_no_grouped_convolution_at_128_px():
    fused = _group_counts(NAME, 128)
    assert len(fused) == 1 + 4 * 1 + 13 * 2 + 1 - 4  # stem, 17 fused blocks (4 with 1 conv), head
    assert set(fused) == {1}
    # the same check sees MobileNetV2's depthwise convolutions, so it can fail
    assert max(_group_counts("mobilenet_v2", 128)) > 1


@pytest.fixture(scope="module")
def small_variables():
    """Variables of the width-0.25 classifier on 32 px images (the same for any compute dtype)."""
    net = create_backbone(NAME, num_classes=2, width=0.25)
    return jax.jit(net.init)(INIT_KEY, jnp.zeros((2, 32, 32, 3)))


def test_bfloat16_compute_keeps_float32_parameters_and_finite_outputs(small_variables):
    net = create_backbone(NAME, num_classes=2, width=0.25, dtype=jnp.bfloat16)
    x = normalize_images(jax.random.uniform(jax.random.key(1), (2, 32, 32, 3)) * 255, NAME)
    shapes = jax.eval_shape(net.init, jax.random.key(1), x)
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(shapes["params"]))
    out = jax.jit(net.apply)(small_variables, x)
    assert out.dtype == jnp.bfloat16 and np.all(np.isfinite(np.asarray(out, np.float32)))
    reference = jax.jit(create_backbone(NAME, num_classes=2, width=0.25).apply)(small_variables, x)
    np.testing.assert_allclose(np.asarray(out, np.float32), reference, rtol=0.1, atol=0.1)


def test_tiny_nsnet_with_it_as_sampler_runs_inference_and_a_sampler_step():
    config = tiny_config(
        model__sampler__backbone=NAME,
        model__sampler__width=0.25,
        model__recognizer__backbone="patch_cnn",  # compiles faster than the tiny ResNet-18
    )
    model = build_model(config)
    variables = jax.jit(lambda k: init_variables(model, config, k))(INIT_KEY)
    batch = synthetic_train_batch(config, "sampler", batch=4)
    out = make_inference_fn(model)(
        variables, batch["sampler_frames"], synthetic_train_batch(config, "recognizer", 4)["frames"]
    )
    assert out["logits"].shape == (4, config.data.num_classes)
    assert np.all(np.isfinite(np.asarray(out["logits"])))

    tx, _ = build_stage_optimizer(config, "sampler", variables["params"], steps_per_epoch=10)
    state = create_train_state(variables, tx)
    new_state, metrics = jax.jit(make_train_step(config, model, "sampler", tx))(
        state, batch, jax.random.key(1)
    )
    assert np.isfinite(float(metrics["loss"]))
    stem = lambda s: s.params["sampler"]["backbone"]["stem_conv"]["kernel"]  # noqa: E731
    assert not np.allclose(stem(new_state), stem(state))


def test_frozen_it_gives_cacheable_features_and_it_also_serves_as_recognizer():
    """The feature cache path: `embed` then `sample_features` equals `sample` when frozen."""
    from nsnet_jax.models.nsnet import NSNet

    config = tiny_config(
        model__sampler__backbone=NAME,
        model__sampler__width=0.25,
        model__sampler__freeze_backbone=True,
        model__recognizer__backbone=NAME,
        model__recognizer__width=0.25,
    )
    model = build_model(config)
    variables = jax.jit(lambda k: init_variables(model, config, k))(INIT_KEY)
    lo = synthetic_train_batch(config, "sampler", batch=2)["sampler_frames"]
    apply = jax.jit(model.apply, static_argnames="method")
    features = apply(variables, lo, method=NSNet.embed)
    assert features.shape == (2, config.data.num_frames, 1280)
    whole = apply(variables, lo, method=NSNet.sample)["scores"]
    parts = apply(variables, features, method=NSNet.sample_features)["scores"]
    np.testing.assert_allclose(parts, whole, rtol=1e-5, atol=1e-5)
    frames = synthetic_train_batch(config, "recognizer", batch=2)["frames"][:, :2]
    logits = apply(variables, frames, method=NSNet.recognize)["logits"]
    assert logits.shape == (2, config.data.num_classes)


def _bars(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """32 px noise images; class 1 has a bright horizontal bar, class 0 a vertical one."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 120, (n, 32, 32, 3)).astype(np.float32)
    y = rng.integers(0, 2, n)
    for i, (label, at) in enumerate(zip(y, rng.integers(4, 26, n))):
        if label:
            x[i, at : at + 3, :, :] = 255.0
        else:
            x[i, :, at : at + 3, :] = 255.0
    return x, y


def test_it_learns_a_small_separable_task(small_variables):
    net = create_backbone(NAME, num_classes=2, width=0.25)
    x, y = _bars(48 * 16, 0)  # fresh images every step: it cannot memorise them
    x = normalize_images(x, NAME)
    variables = small_variables
    tx = optax.adam(3e-3)
    opt_state = tx.init(variables["params"])

    def loss_fn(params, batch_stats, xb, yb):
        logits, updates = net.apply(
            {"params": params, "batch_stats": batch_stats}, xb, train=True, mutable=["batch_stats"]
        )
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()
        return loss, updates["batch_stats"]

    @jax.jit
    def step(params, batch_stats, opt_state, xb, yb):
        (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            params, batch_stats, xb, yb
        )
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), batch_stats, opt_state, loss

    params, batch_stats = variables["params"], variables["batch_stats"]
    losses = []
    for i in range(48):
        sl = slice(i * 16, (i + 1) * 16)
        params, batch_stats, opt_state, loss = step(params, batch_stats, opt_state, x[sl], y[sl])
        losses.append(float(loss))
    assert np.mean(losses[-8:]) < 0.5 * np.mean(losses[:8]), losses
    held_out, labels = _bars(64, 1)
    logits = jax.jit(net.apply)(
        {"params": params, "batch_stats": batch_stats}, normalize_images(held_out, NAME)
    )
    assert np.mean(np.argmax(logits, -1) == labels) >= 0.75  # chance: 0.5
