"""The recognizer: a per-frame backbone whose K outputs are aggregated into a video prediction.

Aggregations: `mean_logits` (TSN average consensus, the default), `mean_softmax` (returns the log of
the mean probability, so cross-entropy still applies), `maxpool_mlp` (FrameExit style: per-frame
Linear(D->mlp_dim)+BN+ReLU, max over frames, Linear(mlp_dim->C)).

`freeze_backbone` keeps a (pretrained) backbone fixed: it runs in inference mode under
stop_gradient, so training costs one forward pass of it and only the head learns.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from nsnet_jax.models.registry import create_backbone, normalize_images

AGGREGATIONS = ("mean_logits", "mean_softmax", "maxpool_mlp")


class Recognizer(nn.Module):
    backbone: str = "resnet50"
    num_classes: int = 200
    width: float = 1.0
    aggregation: str = "mean_logits"
    mlp_dim: int = 4096
    dropout_rate: float = 0.0
    depthwise_impl: str = "auto"
    spatial_pool: str = "mean"
    dtype: Any = jnp.float32
    freeze_backbone: bool = False

    @nn.compact
    def __call__(self, frames: jax.Array, train: bool = False) -> dict[str, jax.Array]:
        """frames [B, K, H, W, 3] (0..255) -> video `logits` [B, C], `frame_logits` [B, K, C].

        maxpool_mlp adds `pool_share` [B, K, C]: what each frame passes through the max-pool to
        each class's logit (the positive part), for the `maxpool_share` pseudo-label rule.
        """
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(
                f"model.recognizer.aggregation={self.aggregation!r} is not one of "
                f"{list(AGGREGATIONS)}"
            )
        b, k = frames.shape[:2]
        x = normalize_images(frames.reshape((b * k,) + frames.shape[2:]), self.backbone, self.dtype)
        maxpool = self.aggregation == "maxpool_mlp"
        net = create_backbone(
            self.backbone,
            num_classes=None if maxpool else self.num_classes,
            width=self.width,
            dtype=self.dtype,
            depthwise_impl=self.depthwise_impl,
            dropout_rate=self.dropout_rate,
            spatial_pool=self.spatial_pool,
            name="backbone",
        )
        if self.freeze_backbone:
            out = jax.lax.stop_gradient(net(x, train=False))
        else:
            out = net(x, train=train)
        if maxpool:
            h = nn.Dense(self.mlp_dim, dtype=self.dtype, name="mlp_hidden")(out)
            h = nn.BatchNorm(use_running_average=not train, momentum=0.9, name="mlp_bn")(h)
            h = nn.relu(h).reshape(b, k, -1)
            classifier = nn.Dense(self.num_classes, dtype=self.dtype, name="mlp_out")
            # max over one frame is the frame itself: per-frame logits for pseudo labels.
            frame_logits = classifier(h).astype(jnp.float32)
            pooled = h.max(axis=1)
            logits = classifier(pooled).astype(jnp.float32)
            # unit d reaches the video logit through the frame that wins its max-pool
            won = jnp.where(h == pooled[:, None], h, 0).astype(jnp.float32)
            kernel = jnp.maximum(classifier.variables["params"]["kernel"], 0).astype(jnp.float32)
            share = jnp.einsum("bkd,dc->bkc", won, kernel)
            return {"logits": logits, "frame_logits": frame_logits, "pool_share": share}
        else:
            frame_logits = out.reshape(b, k, -1).astype(jnp.float32)
            if self.aggregation == "mean_logits":
                logits = frame_logits.mean(axis=1)
            else:
                probs = jax.nn.softmax(frame_logits, axis=-1).mean(axis=1)
                logits = jnp.log(probs + 1e-8)
        return {"logits": logits, "frame_logits": frame_logits}
