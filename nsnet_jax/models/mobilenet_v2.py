"""MobileNetV2 (Sandler et al. 2018) with a width multiplier, in torchvision's layout.

The depthwise convolutions go through `DepthwiseConv`, so the same parameters run fast on CPU
(shifted multiply-adds) and on GPU/TPU (native grouped convolution).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from nsnet_jax.models.layers import (
    TORCH_BN,
    InvertedResidual,
    batch_norm,
    conv_layer,
    make_divisible,
    relu6,
    spatial_pool,
)

# (expansion t, output channels c, repeats n, first stride s), from the paper's Table 2.
INVERTED_RESIDUAL_SETTING = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class MobileNetV2(nn.Module):
    """MobileNetV2; `num_classes=None` returns the pooled 1280-d (at width <= 1) features."""

    num_classes: int | None = 1000
    width: float = 1.0
    dropout_rate: float = 0.0
    depthwise_impl: str = "auto"
    spatial_pool: str = "mean"  # mean | max | mean_max (layers.spatial_pool)
    dtype: Any = jnp.float32

    @property
    def feature_dim(self) -> int:
        return make_divisible(1280 * max(1.0, self.width))

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        conv = conv_layer(self.dtype)
        norm = batch_norm(train, self.dtype, TORCH_BN)
        x = x.astype(self.dtype)
        in_features = make_divisible(32 * self.width)
        x = conv(in_features, (3, 3), (2, 2), padding=1, name="stem_conv")(x)
        x = relu6(norm(name="stem_bn")(x))
        block = 0
        for t, c, n, s in INVERTED_RESIDUAL_SETTING:
            out_features = make_divisible(c * self.width)
            for i in range(n):
                x = InvertedResidual(
                    out_features,
                    kernel_size=3,
                    strides=s if i == 0 else 1,
                    expansion=t,
                    padding="symmetric",
                    bn=TORCH_BN,
                    depthwise_impl=self.depthwise_impl,
                    dtype=self.dtype,
                    name=f"block{block}",
                )(x, train)
                in_features = out_features
                block += 1
        x = conv(self.feature_dim, (1, 1), name="head_conv")(x)
        x = relu6(norm(name="head_bn")(x))
        x = spatial_pool(x, self.spatial_pool)
        if self.num_classes is None:
            return x
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        return nn.Dense(self.num_classes, dtype=self.dtype, name="classifier")(x)
