"""The NSNet sampler: one batched pass over all T low-resolution frames, two heads, one score.

frames [B, T, h, w, 3] -> backbone features h_t [B, T, D] -> optional temporal context ->
  frame head:     f_t  (frame-level saliency logit, s_f = sigmoid(f))
  attention head: g_t  (temporal attention logit, a = sigmoid(g))
  video head:     W z+ and W z- on the attention-pooled salient / non-salient representations
score s_t = fuse(s_f, a)   (`sum`: s_f + beta a, `product`: s_f a, `rank`: rank(s_f) + beta rank(a))

`freeze_backbone` keeps a pretrained backbone fixed (inference mode, no gradient): only the temporal
context and the heads learn, and a step costs one forward pass of the backbone, or none when the
backbone's features were computed once (`features=`, `train.feature_cache`).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from nsnet_jax.models.registry import create_backbone, normalize_images

TEMPORAL_MODES = ("none", "conv1d", "transformer")
FUSIONS = ("sum", "product", "rank")


class TemporalContext(nn.Module):
    """Mixes information across the T frames before the heads; residual, so `none` is the limit."""

    mode: str
    num_heads: int = 4
    kernel: int = 3  # conv1d: frames each frame sees (itself and (kernel - 1) / 2 each side)
    dtype: Any = jnp.float32
    layers: int = 1  # stacked residual blocks; the first keeps the single-layer parameter names

    @nn.compact
    def __call__(self, h: jax.Array) -> jax.Array:
        if self.mode == "none":
            return h
        if self.mode not in TEMPORAL_MODES:
            raise ValueError(
                f"model.sampler.temporal={self.mode!r} is not one of {list(TEMPORAL_MODES)}"
            )
        dim = h.shape[-1]
        if self.mode == "transformer":
            pos = self.param("pos_embedding", nn.initializers.normal(0.02), (h.shape[1], dim))
            h = h + pos.astype(h.dtype)
        dt = self.dtype
        for i in range(self.layers):
            n = "" if i == 0 else f"_{i + 1}"
            if self.mode == "conv1d":
                conv = nn.Conv(dim, (self.kernel,), padding="SAME", dtype=dt, name="conv" + n)
                h = h + nn.relu(conv(h))
                continue
            attn = nn.MultiHeadDotProductAttention(self.num_heads, dtype=dt, name="attn" + n)
            y = nn.LayerNorm(dtype=dt, name="ln_attn" + n)(h)
            h = h + attn(y, y)
            y = nn.LayerNorm(dtype=dt, name="ln_mlp" + n)(h)
            y = nn.Dense(dim, dtype=dt, name="mlp_in" + n)(y)
            h = h + nn.Dense(dim, dtype=dt, name="mlp_out" + n)(nn.gelu(y))
        return h


def _normalized_rank(x: jax.Array) -> jax.Array:
    """Rank of each frame within its video, scaled to [0, 1] (1 = best)."""
    ranks = jnp.argsort(jnp.argsort(x, axis=-1, stable=True), axis=-1, stable=True)
    return ranks.astype(jnp.float32) / max(x.shape[-1] - 1, 1)


def fuse_scores(frame_logits: jax.Array, attn_logits: jax.Array, fusion: str, beta: float):
    """The inference score of every frame from its saliency and attention logits."""
    s_f = jax.nn.sigmoid(frame_logits.astype(jnp.float32))
    a = jax.nn.sigmoid(attn_logits.astype(jnp.float32))
    if fusion == "sum":
        return s_f + beta * a
    if fusion == "product":
        return s_f * a
    if fusion == "rank":
        return _normalized_rank(s_f) + beta * _normalized_rank(a)
    raise ValueError(f"model.sampler.fusion={fusion!r} is not one of {list(FUSIONS)}")


class NSNetSampler(nn.Module):
    """Scores T candidate frames; `video_classes` includes the background class when used."""

    backbone: str = "mobilenet_v2"
    width: float = 1.0
    video_classes: int = 201
    temporal: str = "none"
    transformer_heads: int = 4
    temporal_kernel: int = 3
    temporal_layers: int = 1
    spatial_pool: str = "mean"
    fusion: str = "sum"
    fusion_beta: float = 1.0
    freeze_backbone: bool = False
    depthwise_impl: str = "auto"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(
        self,
        frames: jax.Array | None,
        train: bool = False,
        *,
        features: jax.Array | None = None,
        embed_only: bool = False,
    ) -> dict[str, jax.Array]:
        """frames [B, T, h, w, 3]; or, for a frozen backbone, its `features` [B, T, D] computed
        earlier (`embed_only=True` returns just those as `backbone_features`)."""
        if features is None:
            b, t = frames.shape[:2]
            x = normalize_images(
                frames.reshape((b * t,) + frames.shape[2:]), self.backbone, self.dtype
            )
            net = create_backbone(
                self.backbone,
                num_classes=None,
                width=self.width,
                dtype=self.dtype,
                depthwise_impl=self.depthwise_impl,
                spatial_pool=self.spatial_pool,
                name="backbone",
            )
            if self.freeze_backbone:
                h = jax.lax.stop_gradient(net(x, train=False)).reshape(b, t, -1)
            else:
                h = net(x, train=train).reshape(b, t, -1)
            if embed_only:
                return {"backbone_features": h}
        elif not self.freeze_backbone:
            raise ValueError(
                "NSNetSampler(features=...) skips the backbone, which is only right when it is "
                "frozen: set config.model.sampler.freeze_backbone=True"
            )
        else:
            h = features.astype(self.dtype)
        h = TemporalContext(
            self.temporal, self.transformer_heads, self.temporal_kernel, self.dtype,
            self.temporal_layers, name="temporal",
        )(h)  # fmt: skip
        frame_logits = nn.Dense(1, dtype=self.dtype, name="frame_head")(h)[..., 0]
        attn_logits = nn.Dense(1, dtype=self.dtype, name="attention_head")(h)[..., 0]

        h32 = h.astype(jnp.float32)
        attn = jax.nn.sigmoid(attn_logits.astype(jnp.float32))[..., None]
        z_salient = (attn * h32).sum(1) / (attn.sum(1) + 1e-6)
        z_nonsalient = ((1 - attn) * h32).sum(1) / ((1 - attn).sum(1) + 1e-6)
        video_head = nn.Dense(self.video_classes, dtype=self.dtype, name="video_head")
        return {
            "features": h,
            "frame_logits": frame_logits.astype(jnp.float32),
            "attn_logits": attn_logits.astype(jnp.float32),
            "scores": fuse_scores(frame_logits, attn_logits, self.fusion, self.fusion_beta),
            "salient_logits": video_head(z_salient.astype(self.dtype)).astype(jnp.float32),
            "nonsalient_logits": video_head(z_nonsalient.astype(self.dtype)).astype(jnp.float32),
        }
