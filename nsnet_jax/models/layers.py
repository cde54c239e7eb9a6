"""Building blocks shared by the backbones.

The one non-obvious piece is the depthwise convolution: XLA:CPU runs grouped convolutions 30-70x
slower than it should, so on CPU we compute it as a sum of k*k shifted, per-channel-scaled slices
of the input. Both implementations read the same `kernel` parameter of shape (k, k, 1, C), the
layout of `flax.linen.Conv(feature_group_count=C)`, so checkpoints move freely between platforms.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

DEPTHWISE_IMPLS = ("auto", "grouped", "shifted")
Padding = str | Sequence[tuple[int, int]]
CONV_INIT = nn.initializers.variance_scaling(2.0, "fan_out", "normal")  # torchvision's He init


@dataclass(frozen=True)
class BatchNormSpec:
    """BatchNorm constants; they decide whether imported weights reproduce their source."""

    momentum: float
    epsilon: float


TORCH_BN = BatchNormSpec(momentum=0.9, epsilon=1e-5)  # torchvision (its momentum 0.1)
TF_BN = BatchNormSpec(momentum=0.99, epsilon=1e-3)  # TF Model Garden (EfficientNet-Lite)


def conv_layer(dtype: Any, kernel_init: Any = CONV_INIT) -> Any:
    """nn.Conv without bias (a BatchNorm follows), in the compute dtype."""
    return partial(nn.Conv, use_bias=False, dtype=dtype, kernel_init=kernel_init)


def batch_norm(train: bool, dtype: Any, spec: BatchNormSpec = TORCH_BN) -> Any:
    return partial(
        nn.BatchNorm,
        use_running_average=not train,
        momentum=spec.momentum,
        epsilon=spec.epsilon,
        dtype=dtype,
    )


def resolve_depthwise_impl(impl: str) -> str:
    """`auto` picks `shifted` on CPU (fast there) and `grouped` on GPU/TPU (native there)."""
    if impl not in DEPTHWISE_IMPLS:
        raise ValueError(f"depthwise_impl={impl!r} is not one of {list(DEPTHWISE_IMPLS)}")
    if impl == "auto":
        return "shifted" if jax.default_backend() == "cpu" else "grouped"
    return impl


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow 'SAME' padding (asymmetric for even totals), as EfficientNet-Lite was trained."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _explicit_padding(padding: Padding, shape: tuple[int, int], kernel: int, stride: int):
    if isinstance(padding, str):
        if padding.upper() != "SAME":
            raise ValueError(f"padding={padding!r}: only 'SAME' or explicit pairs are supported")
        return [same_padding(s, kernel, stride) for s in shape]
    return [tuple(p) for p in padding]


class DepthwiseConv(nn.Module):
    """k x k depthwise convolution without bias; see the module docstring for `impl`."""

    kernel_size: int
    strides: int = 1
    padding: Padding = "SAME"
    impl: str = "auto"
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        channels = x.shape[-1]
        k, s = self.kernel_size, self.strides
        kernel = self.param(
            "kernel",
            nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal"),
            (k, k, 1, channels),
            self.param_dtype,
        )
        x = x.astype(self.dtype)
        kernel = kernel.astype(self.dtype)
        pads = _explicit_padding(self.padding, x.shape[1:3], k, s)
        if resolve_depthwise_impl(self.impl) == "grouped":
            return jax.lax.conv_general_dilated(
                x,
                kernel,
                window_strides=(s, s),
                padding=pads,
                dimension_numbers=("NHWC", "HWIO", "NHWC"),
                feature_group_count=channels,
            )
        x = jnp.pad(x, [(0, 0), pads[0], pads[1], (0, 0)])
        out_h = (x.shape[1] - k) // s + 1
        out_w = (x.shape[2] - k) // s + 1
        out = None
        for i in range(k):
            for j in range(k):
                window = jax.lax.slice(
                    x,
                    (0, i, j, 0),
                    (x.shape[0], i + (out_h - 1) * s + 1, j + (out_w - 1) * s + 1, channels),
                    (1, s, s, 1),
                )
                term = window * kernel[i, j, 0]
                out = term if out is None else out + term
        return out


SPATIAL_POOLS = ("mean", "max", "mean_max")


def spatial_pool(x: jax.Array, mode: str) -> jax.Array:
    """[N, H, W, C] -> [N, C]. `max` keeps a small object's response that the mean dilutes with
    background; `mean_max` adds both (same width, so heads and imported weights still fit)."""
    if mode == "mean":
        return jnp.mean(x, axis=(1, 2))
    if mode == "max":
        return jnp.max(x, axis=(1, 2))
    if mode == "mean_max":
        return jnp.mean(x, axis=(1, 2)) + jnp.max(x, axis=(1, 2))
    raise ValueError(f"spatial_pool={mode!r} is not one of {list(SPATIAL_POOLS)}")


def relu6(x: jax.Array) -> jax.Array:
    return jnp.clip(x, 0.0, 6.0)


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Channel rounding of the MobileNet family (the torchvision/TF reference helper)."""
    min_value = min_value or divisor
    new = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


class InvertedResidual(nn.Module):
    """MobileNetV2's inverted residual, also EfficientNet-Lite's MBConv (no squeeze-excite).

    expand 1x1 -> depthwise k x k -> project 1x1, ReLU6, residual when shapes allow. The two
    families differ only in `padding` ("symmetric": k//2 on each side, torchvision; "SAME":
    TensorFlow's, asymmetric at stride 2), the kernel size and the BatchNorm constants.
    """

    out_features: int
    kernel_size: int
    strides: int
    expansion: int
    padding: str  # "symmetric" | "SAME"
    bn: BatchNormSpec
    depthwise_impl: str
    dtype: Any

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        conv = conv_layer(self.dtype)
        norm = batch_norm(train, self.dtype, self.bn)
        in_features = x.shape[-1]
        y = x
        if self.expansion != 1:
            y = conv(in_features * self.expansion, (1, 1), name="expand_conv")(y)
            y = relu6(norm(name="expand_bn")(y))
        pad = self.kernel_size // 2
        y = DepthwiseConv(
            self.kernel_size,
            self.strides,
            padding="SAME" if self.padding == "SAME" else ((pad, pad), (pad, pad)),
            impl=self.depthwise_impl,
            dtype=self.dtype,
            name="dw_conv",
        )(y)
        y = relu6(norm(name="dw_bn")(y))
        y = norm(name="project_bn")(conv(self.out_features, (1, 1), name="project_conv")(y))
        if self.strides == 1 and in_features == self.out_features:
            y = y + x
        return y
