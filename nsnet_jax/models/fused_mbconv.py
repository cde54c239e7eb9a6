"""A MobileNetV2-sized backbone built only from dense convolutions, for GPU samplers.

On an H200 at ActivityNet's shapes, MobileNetV2's depthwise convolutions took 37% of NSNet's time
for 6% of its FLOPs: a depthwise convolution does 9 multiply-adds per value it reads, so it runs at
memory speed, far below the GPU's matmul rate. Fused-MBConv (EfficientNet-EdgeTPU, Gupta & Tan
2019; EfficientNetV2, Tan & Le 2021) replaces an inverted residual's 1x1 expansion and 3x3
depthwise with one dense 3x3 convolution, then projects with a 1x1. Here every block is fused, so
the network has no depthwise (grouped) convolution at all; expansions are kept small (2, and 1 in
the wide late stages, where a fused block is a single residual 3x3) so that at 128 px it costs no
more multiply-adds per frame than MobileNetV2 width 1.0 (tests/test_gpu_friendly_backbone.py).

MobileNetV2's stage widths, strides, ReLU6, torchvision BatchNorm and input normalisation are kept,
so `width` and `feature_dim` (1280) mean the same; there are no ImageNet weights for it.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from nsnet_jax.models.layers import (
    TORCH_BN,
    batch_norm,
    conv_layer,
    make_divisible,
    relu6,
    spatial_pool,
)

STEM_CHANNELS = 16  # MobileNetV2's 32 would cost 9.4M MACs more in the first 64x64 block
# (expansion t, output channels c, repeats n, first stride s): MobileNetV2's stages, all fused.
FUSED_SETTING = (
    (1, 16, 1, 1),
    (2, 24, 2, 2),
    (2, 32, 3, 2),
    (2, 64, 4, 2),
    (1, 96, 3, 1),
    (1, 160, 3, 2),
    (1, 320, 1, 1),
)


class FusedMBConv(nn.Module):
    """Dense k x k conv to `expansion` x the input channels, then a 1x1 projection (none at
    expansion 1, where the k x k conv maps straight to `out_features`); residual when shapes allow.
    """

    out_features: int
    strides: int
    expansion: int
    kernel_size: int = 3
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        conv = conv_layer(self.dtype)
        norm = batch_norm(train, self.dtype, TORCH_BN)
        in_features = x.shape[-1]
        k, pad = self.kernel_size, self.kernel_size // 2
        hidden = self.out_features if self.expansion == 1 else in_features * self.expansion
        y = conv(hidden, (k, k), (self.strides,) * 2, padding=pad, name="fused_conv")(x)
        y = relu6(norm(name="fused_bn")(y))
        if self.expansion != 1:
            y = norm(name="project_bn")(conv(self.out_features, (1, 1), name="project_conv")(y))
        if self.strides == 1 and in_features == self.out_features:
            y = y + x
        return y


class FusedMBConvNet(nn.Module):
    """MobileNetV2's layout with Fused-MBConv blocks; `num_classes=None` returns the pooled
    1280-d (at width <= 1) features."""

    num_classes: int | None = 1000
    width: float = 1.0
    dropout_rate: float = 0.0
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
        stem = make_divisible(STEM_CHANNELS * self.width)
        x = conv(stem, (3, 3), (2, 2), padding=1, name="stem_conv")(x)
        x = relu6(norm(name="stem_bn")(x))
        block = 0
        for t, c, n, s in FUSED_SETTING:
            for i in range(n):
                x = FusedMBConv(
                    make_divisible(c * self.width),
                    strides=s if i == 0 else 1,
                    expansion=t,
                    dtype=self.dtype,
                    name=f"block{block}",
                )(x, train)
                block += 1
        x = conv(self.feature_dim, (1, 1), name="head_conv")(x)
        x = relu6(norm(name="head_bn")(x))
        x = spatial_pool(x, self.spatial_pool)
        if self.num_classes is None:
            return x
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        return nn.Dense(self.num_classes, dtype=self.dtype, name="classifier")(x)
