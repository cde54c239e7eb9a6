"""NSNet end to end: sampler on all T low-res frames -> top-K -> recognizer on K full-res frames.

One module holds both networks, so one variables tree (`params/sampler`, `params/recognizer`) goes
through training, checkpoints and inference. The stages of training call the sub-networks through
`method=` (`NSNet.sample`, `NSNet.recognize`; `NSNet.embed` and `NSNet.sample_features` split
`sample` at a frozen sampler backbone).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from nsnet_jax.models.recognizer import Recognizer
from nsnet_jax.models.sampler import NSNetSampler
from nsnet_jax.models.selection import gather_frames, topk_indices

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}  # compute dtypes; params stay float32


class NSNet(nn.Module):
    sampler: NSNetSampler
    recognizer: Recognizer
    num_select: int

    def sample(self, sampler_frames: jax.Array, train: bool = False) -> dict[str, jax.Array]:
        return self.sampler(sampler_frames, train=train)

    def embed(self, sampler_frames: jax.Array) -> jax.Array:
        """The sampler backbone's features [B, T, D] (for a frozen backbone: a fixed function)."""
        return self.sampler(sampler_frames, embed_only=True)["backbone_features"]

    def sample_features(self, features: jax.Array, train: bool = False) -> dict[str, jax.Array]:
        """`sample` from features `embed` gave (frozen backbone only): the context and heads."""
        return self.sampler(None, train=train, features=features)

    def recognize(self, frames: jax.Array, train: bool = False) -> dict[str, jax.Array]:
        return self.recognizer(frames, train=train)

    def __call__(self, sampler_frames: jax.Array, frames: jax.Array) -> dict[str, jax.Array]:
        """Inference: `frames` holds the T full-res candidates; only K reach the recognizer."""
        sampled = self.sampler(sampler_frames, train=False)
        indices = topk_indices(sampled["scores"], self.num_select)
        recognized = self.recognizer(gather_frames(frames, indices), train=False)
        return {"logits": recognized["logits"], "indices": indices, "scores": sampled["scores"]}


def video_classes(config: Any) -> int:
    """The sampler's video head gets one extra, background, class under the `background` loss."""
    extra = 1 if config.loss.nonsalient == "background" else 0
    return config.data.num_classes + extra


def build_model(config: Any) -> NSNet:
    """The NSNet module a config describes (callers validate the whole config first)."""
    if config.model.dtype not in DTYPES:
        raise ValueError(
            f"config.model.dtype={config.model.dtype!r} is not allowed; "
            f"choose one of {list(DTYPES)}"
        )
    dtype = DTYPES[config.model.dtype]
    m = config.model
    sampler = NSNetSampler(
        backbone=m.sampler.backbone,
        width=m.sampler.width,
        video_classes=video_classes(config),
        temporal=m.sampler.temporal,
        transformer_heads=m.sampler.transformer_heads,
        temporal_kernel=m.sampler.temporal_kernel,
        temporal_layers=m.sampler.temporal_layers,
        spatial_pool=m.sampler.spatial_pool,
        fusion=m.sampler.fusion,
        fusion_beta=m.sampler.fusion_beta,
        freeze_backbone=m.sampler.freeze_backbone,
        depthwise_impl=m.depthwise_impl,
        dtype=dtype,
    )
    recognizer = Recognizer(
        backbone=m.recognizer.backbone,
        num_classes=config.data.num_classes,
        width=m.recognizer.width,
        aggregation=m.recognizer.aggregation,
        mlp_dim=m.recognizer.mlp_dim,
        dropout_rate=m.recognizer.dropout_rate,
        depthwise_impl=m.depthwise_impl,
        dtype=dtype,
        freeze_backbone=m.recognizer.freeze_backbone,
        spatial_pool=m.recognizer.spatial_pool,
    )
    return NSNet(sampler=sampler, recognizer=recognizer, num_select=m.num_select)


def input_shapes(config: Any, batch_size: int = 1) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Shapes of the sampler view and of the full-resolution view for a batch."""
    t, d = config.data.num_frames, config.data
    return (
        (batch_size, t, d.sampler_size, d.sampler_size, 3),
        (batch_size, t, d.recognizer_size, d.recognizer_size, 3),
    )


def init_variables(model: NSNet, config: Any, rng: jax.Array, batch_size: int = 1) -> Any:
    """Initialises both networks (BatchNorm statistics included) on zero inputs."""
    lo, hi = input_shapes(config, batch_size)
    k = config.model.num_select
    hi_k = (hi[0], k) + hi[2:]

    def init_all(module: NSNet, lo_frames, hi_frames):
        module.sample(lo_frames)
        return module.recognize(hi_frames)

    return nn.init(init_all, model)(rng, jnp.zeros(lo, jnp.uint8), jnp.zeros(hi_k, jnp.uint8))
