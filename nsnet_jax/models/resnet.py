"""ResNet-18/34/50/101/152 with torchvision's layout (v1.5: stride on the 3x3 conv of a bottleneck).

Module names follow torchvision's (`conv1`, `layer1_0`, `downsample_conv`, `fc`) so the PyTorch
converter maps parameters by path, not by position.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from nsnet_jax.models.layers import TORCH_BN, batch_norm, conv_layer, spatial_pool


class _Block(nn.Module):
    features: int
    strides: int
    bottleneck: bool
    downsample: bool
    zero_init_residual: bool
    dtype: Any

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        conv = conv_layer(self.dtype)
        norm = batch_norm(train, self.dtype, TORCH_BN)
        last_scale = nn.initializers.zeros if self.zero_init_residual else nn.initializers.ones
        residual = x
        if self.bottleneck:
            y = nn.relu(norm(name="bn1")(conv(self.features, (1, 1), name="conv1")(x)))
            y = conv(self.features, (3, 3), self.strides, padding=1, name="conv2")(y)
            y = nn.relu(norm(name="bn2")(y))
            y = conv(self.features * 4, (1, 1), name="conv3")(y)
            y = norm(scale_init=last_scale, name="bn3")(y)
            out_features = self.features * 4
        else:
            y = conv(self.features, (3, 3), self.strides, padding=1, name="conv1")(x)
            y = nn.relu(norm(name="bn1")(y))
            y = conv(self.features, (3, 3), padding=1, name="conv2")(y)
            y = norm(scale_init=last_scale, name="bn2")(y)
            out_features = self.features
        if self.downsample:
            residual = conv(out_features, (1, 1), self.strides, name="downsample_conv")(x)
            residual = norm(name="downsample_bn")(residual)
        return nn.relu(y + residual)


class ResNet(nn.Module):
    """ResNet; `num_classes=None` returns the pooled features instead of logits."""

    stage_sizes: Sequence[int]
    bottleneck: bool
    num_classes: int | None = 1000
    width: float = 1.0
    zero_init_residual: bool = True
    dropout_rate: float = 0.0
    spatial_pool: str = "mean"  # mean | max | mean_max (layers.spatial_pool)
    dtype: Any = jnp.float32

    @property
    def feature_dim(self) -> int:
        return int(64 * self.width) * 8 * (4 if self.bottleneck else 1)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        base = int(64 * self.width)
        x = x.astype(self.dtype)
        x = conv_layer(self.dtype)(base, (7, 7), (2, 2), padding=3, name="conv1")(x)
        x = batch_norm(train, self.dtype, TORCH_BN)(name="bn1")(x)
        x = nn.relu(x)
        # padded by hand, keywords only: jax2onnx replaces nn.max_pool while it traces by a
        # version without explicit padding (inference/onnx_export.py); the same numbers
        x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-jnp.inf)
        x = nn.max_pool(x, window_shape=(3, 3), strides=(2, 2), padding="VALID")
        in_features = base
        for stage, blocks in enumerate(self.stage_sizes):
            features = base * 2**stage
            for index in range(blocks):
                strides = 2 if stage > 0 and index == 0 else 1
                out_features = features * (4 if self.bottleneck else 1)
                x = _Block(
                    features=features,
                    strides=strides,
                    bottleneck=self.bottleneck,
                    downsample=index == 0 and (strides != 1 or in_features != out_features),
                    zero_init_residual=self.zero_init_residual,
                    dtype=self.dtype,
                    name=f"layer{stage + 1}_{index}",
                )(x, train)
                in_features = out_features
        x = spatial_pool(x, self.spatial_pool)
        if self.num_classes is None:
            return x
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        return nn.Dense(self.num_classes, dtype=self.dtype, name="fc")(x)


RESNET_STAGES = {
    18: ((2, 2, 2, 2), False),
    34: ((3, 4, 6, 3), False),
    50: ((3, 4, 6, 3), True),
    101: ((3, 4, 23, 3), True),
    152: ((3, 8, 36, 3), True),
}
