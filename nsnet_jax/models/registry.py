"""Backbones chosen by name, with the input normalisation their weights expect.

Every backbone maps float images [N, H, W, 3] in 0..255 (after `normalize_images`) to logits, or to
pooled features when built with `num_classes=None`; `feature_dim` tells the size of those features.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from nsnet_jax.models.efficientnet_lite import LITE_VARIANTS, EfficientNetLite
from nsnet_jax.models.fused_mbconv import FusedMBConvNet
from nsnet_jax.models.mobilenet_v2 import MobileNetV2
from nsnet_jax.models.patch_cnn import PatchCNN
from nsnet_jax.models.resnet import RESNET_STAGES, ResNet

IMAGENET_TORCH = ((0.485 * 255, 0.456 * 255, 0.406 * 255), (0.229 * 255, 0.224 * 255, 0.225 * 255))
TF_LITE = ((127.0, 127.0, 127.0), (128.0, 128.0, 128.0))


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    build: Callable[..., nn.Module]
    mean_std: tuple[tuple[float, ...], tuple[float, ...]]
    has_depthwise: bool = False


BACKBONES: dict[str, BackboneSpec] = {
    **{
        f"resnet{depth}": BackboneSpec(
            lambda stages=stages, bottleneck=bottleneck, **kw: ResNet(stages, bottleneck, **kw),
            IMAGENET_TORCH,
        )
        for depth, (stages, bottleneck) in RESNET_STAGES.items()
    },
    "mobilenet_v2": BackboneSpec(MobileNetV2, IMAGENET_TORCH, has_depthwise=True),
    # MobileNetV2's layout with dense Fused-MBConv blocks only: no depthwise conv for GPUs
    "fused_mbconv": BackboneSpec(FusedMBConvNet, IMAGENET_TORCH),
    **{
        f"efficientnet_lite{v}": BackboneSpec(
            lambda v=v, **kw: EfficientNetLite(variant=v, **kw), TF_LITE, has_depthwise=True
        )
        for v in LITE_VARIANTS
    },
    "patch_cnn": BackboneSpec(PatchCNN, IMAGENET_TORCH),
    "patch_cnn_s2": BackboneSpec(lambda **kw: PatchCNN(patch_size=2, **kw), IMAGENET_TORCH),
}


def check_backbone_name(name: str, field: str = "backbone") -> None:
    if name not in BACKBONES:
        raise ValueError(
            f"{field}={name!r} is not a known backbone; choose one of {sorted(BACKBONES)}"
        )


def create_backbone(
    backbone: str,
    *,
    num_classes: int | None,
    width: float = 1.0,
    dtype: Any = jnp.float32,
    depthwise_impl: str = "auto",
    dropout_rate: float = 0.0,
    **overrides: Any,
) -> nn.Module:
    """Builds `backbone`; `width` scales channels (EfficientNet-Lite is sized by its name).

    `overrides` go to the module itself (e.g. `name=` for a submodule).
    """
    check_backbone_name(backbone)
    spec = BACKBONES[backbone]
    kwargs: dict[str, Any] = dict(num_classes=num_classes, dtype=dtype, dropout_rate=dropout_rate)
    if spec.has_depthwise:
        kwargs["depthwise_impl"] = depthwise_impl
    if not backbone.startswith("efficientnet_lite"):
        kwargs["width"] = width
    kwargs.update(overrides)
    return spec.build(**kwargs)


def normalize_images(images: jax.Array, backbone: str, dtype: Any = jnp.float32) -> jax.Array:
    """uint8 or float 0..255 images to the value range the backbone's weights were trained on."""
    mean, std = BACKBONES[backbone].mean_std
    images = images.astype(jnp.float32)
    return ((images - jnp.asarray(mean)) / jnp.asarray(std)).astype(dtype)


def count_params(params: Any) -> int:
    return int(sum(x.size for x in jax.tree_util.tree_leaves(params)))
