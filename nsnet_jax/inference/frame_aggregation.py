"""The recognizer split into a per-frame part and its aggregation over any subset of frames.

Early exit adds frames one at a time, so it keeps each video's per-frame features and aggregates
the ones seen so far: the frame logits for `mean_logits` / `mean_softmax`, the ReLU'd hidden
units for `maxpool_mlp` (captured from the recognizer's own `mlp_bn`, so the weights and the
computation are the recognizer's). With every frame in the mask, `aggregate` is what
`Recognizer.__call__` returns for those frames (tests/test_early_exit_batched.py).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

from nsnet_jax.models.nsnet import NSNet


def frame_features(model: NSNet, variables, frames: jax.Array) -> jax.Array:
    """frames [B, K, H, W, 3] -> per-frame features [B, K, D], each frame independent."""
    b, k = frames.shape[:2]
    if model.recognizer.aggregation != "maxpool_mlp":
        return model.apply(variables, frames, method=NSNet.recognize)["frame_logits"]
    _, state = model.apply(
        variables, frames, method=NSNet.recognize, mutable=["intermediates"],
        capture_intermediates=lambda module, _: module.name == "mlp_bn",
    )  # fmt: skip
    (bn,) = state["intermediates"]["recognizer"]["mlp_bn"]["__call__"]
    return nn.relu(bn).reshape(b, k, -1)


def aggregate(model: NSNet, variables, feats: jax.Array, mask: jax.Array) -> jax.Array:
    """Video logits [B, C] from the features [B, K, D] of the frames where mask [B, K] is True.

    Each row needs at least one frame. Masked-out frames add exact zeros (sums) or lose the max
    (the hidden units are >= 0 after the ReLU), so the seen frames alone decide the result.
    """
    rec = model.recognizer
    m = mask[..., None]
    count = mask.sum(1, keepdims=True).astype(jnp.float32)
    if rec.aggregation == "mean_logits":
        return jnp.where(m, feats, 0.0).sum(1) / count
    if rec.aggregation == "mean_softmax":
        probs = jnp.where(m, jax.nn.softmax(feats, axis=-1), 0.0).sum(1) / count
        return jnp.log(probs + 1e-8)
    pooled = jnp.where(m, feats, jnp.zeros((), feats.dtype)).max(1)
    head = nn.Dense(rec.num_classes, dtype=rec.dtype)
    params = {"params": variables["params"]["recognizer"]["mlp_out"]}
    return head.apply(params, pooled).astype(jnp.float32)
