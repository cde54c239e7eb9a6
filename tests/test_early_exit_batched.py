"""The batched early-exit path: same answers as the host-array reference, one compile per bucket.

Logits are compared to 1e-5, decisions exactly: XLA's CPU convolutions round differently at
different batch sizes (measured: up to 3e-8 between 1, 2, 3, 4, 8 and 16 frames), and each bucket
is a different batch size.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nsnet_jax.inference import exit_rules
from nsnet_jax.inference.early_exit import EarlyExitRunner, bucket_sizes
from nsnet_jax.inference.frame_aggregation import aggregate, frame_features
from nsnet_jax.inference.jitted import make_recognize_fn
from nsnet_jax.models.nsnet import build_model, init_variables
from nsnet_jax.models.selection import gather_frames, topk_indices, topk_indices_by_score
from tests.tiny import tiny_config

K_MAX = 3


def _setup(aggregation):
    config = tiny_config(
        model__recognizer__backbone="patch_cnn", model__recognizer__aggregation=aggregation
    )
    model = build_model(config)
    variables = init_variables(model, config, jax.random.key(0))
    variables = jax.tree.map(lambda x: x * 3.0 if x.ndim == 2 else x, variables)  # confident
    frames = jax.random.randint(jax.random.key(1), (8, 6, 32, 32, 3), 0, 255).astype(jnp.uint8)
    scores = np.asarray(jax.random.normal(jax.random.key(2), (8, 6)))
    return model, variables, frames, scores


def _reference_prefix(model, variables, frames, scores):
    """Prefix logits [B, K_max, C] from all K_max frames at once, in temporal order."""
    order = np.asarray(topk_indices_by_score(jnp.asarray(scores), K_MAX))
    temporal = np.sort(order, 1)
    feats = frame_features(model, variables, gather_frames(frames, jnp.asarray(temporal)))
    slot = np.argsort(np.argsort(order, 1), 1)  # temporal slot of each score rank
    rank = np.argsort(slot, 1)  # score rank of each temporal slot
    outs = [aggregate(model, variables, feats, jnp.asarray(rank < j)) for j in range(1, K_MAX + 1)]
    return np.stack([np.asarray(o) for o in outs], 1), temporal


@pytest.mark.parametrize("aggregation", ["maxpool_mlp", "mean_logits", "mean_softmax"])
def test_aggregating_every_frame_is_the_recognizer(aggregation):
    model, variables, frames, scores = _setup(aggregation)
    prefix, temporal = _reference_prefix(model, variables, frames, scores)
    fixed = make_recognize_fn(model)(variables, frames, topk_indices(jnp.asarray(scores), K_MAX))
    np.testing.assert_allclose(prefix[:, -1], np.asarray(fixed), rtol=1e-6, atol=1e-6)


def test_bucketed_path_matches_the_reference_and_compiles_once_per_bucket():
    model, variables, frames, scores = _setup("maxpool_mlp")
    prefix, _ = _reference_prefix(model, variables, frames, scores)
    conf = exit_rules.confidences(prefix, "max_prob")
    ends = np.sort(conf.ravel())
    assert np.diff(ends).max() > 1e-3, "fixture too flat to tell thresholds apart"
    runner = EarlyExitRunner(model, K_MAX, threshold=0.0, buckets=bucket_sizes(8))
    seen_used = set()
    for t in np.quantile(ends, [0.2, 0.5, 0.8]):  # three batch compositions per step
        t = float(ends[np.abs(ends - t).argmin()]) + 1e-4  # never on a confidence
        runner.threshold = t
        out = runner(variables, frames, scores)
        used, logits = exit_rules.apply_exit(prefix, t)
        np.testing.assert_array_equal(out["frames_used"], used)
        np.testing.assert_allclose(out["logits"], logits, rtol=1e-5, atol=1e-5)
        seen_used.add(tuple(out["frames_used"]))
    assert len(seen_used) > 1, "thresholds should change which videos exit"
    assert runner.traces <= len(bucket_sizes(8)) == 4
    before = runner.traces
    runner(variables, frames, scores[::-1].copy())  # another composition: no new trace
    assert runner.traces == before


def test_threshold_one_is_fixed_k_max():
    model, variables, frames, scores = _setup("mean_logits")
    out = EarlyExitRunner(model, K_MAX, threshold=1.0)(variables, frames, scores)
    fixed = make_recognize_fn(model)(variables, frames, topk_indices(jnp.asarray(scores), K_MAX))
    assert (out["frames_used"] == K_MAX).all()
    np.testing.assert_allclose(out["logits"], np.asarray(fixed), rtol=1e-5, atol=1e-5)
