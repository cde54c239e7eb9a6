"""EfficientNet-Lite0..4 (TF Model Garden's mobile variant of EfficientNet).

Lite differs from EfficientNet-B*: no squeeze-excite, ReLU6, a fixed 32-channel stem and
1280-channel head, the first and last stages not depth-scaled, BatchNorm epsilon 1e-3 and TensorFlow
"SAME" padding (asymmetric on stride 2). Those details decide whether ImageNet weights classify
correctly.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from nsnet_jax.models.layers import (
    TF_BN,
    InvertedResidual,
    batch_norm,
    conv_layer,
    make_divisible,
    relu6,
    spatial_pool,
)

# (expansion, kernel, first stride, output channels, repeats), EfficientNet-B0's stages.
BLOCK_SETTING = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)
# variant -> (width multiplier, depth multiplier, native resolution)
LITE_VARIANTS = {
    0: (1.0, 1.0, 224),
    1: (1.0, 1.1, 240),
    2: (1.1, 1.2, 260),
    3: (1.2, 1.4, 280),
    4: (1.4, 1.8, 300),
}


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite; `num_classes=None` returns the pooled 1280-d features."""

    variant: int = 0
    num_classes: int | None = 1000
    dropout_rate: float = 0.0
    depthwise_impl: str = "auto"
    spatial_pool: str = "mean"  # mean | max | mean_max (layers.spatial_pool)
    dtype: Any = jnp.float32

    @property
    def feature_dim(self) -> int:
        return 1280

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        width, depth, _ = LITE_VARIANTS[self.variant]
        conv = conv_layer(self.dtype)
        norm = batch_norm(train, self.dtype, TF_BN)
        x = x.astype(self.dtype)
        x = conv(32, (3, 3), (2, 2), padding="SAME", name="stem_conv")(x)
        x = relu6(norm(name="stem_bn")(x))
        block = 0
        last_stage = len(BLOCK_SETTING) - 1
        for stage, (t, k, s, c, n) in enumerate(BLOCK_SETTING):
            repeats = n if stage in (0, last_stage) else int(math.ceil(depth * n))
            for i in range(repeats):
                x = InvertedResidual(
                    make_divisible(c * width),
                    kernel_size=k,
                    strides=s if i == 0 else 1,
                    expansion=t,
                    padding="SAME",
                    bn=TF_BN,
                    depthwise_impl=self.depthwise_impl,
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
