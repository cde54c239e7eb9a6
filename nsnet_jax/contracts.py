"""The checks the library itself runs below the entry points, so that inference and evaluation need
not import config_checks: a video batch's shape and dtype, and the K values evaluation reports.

`nsnet_jax.config_checks` re-exports both (it runs `eval_ks` as part of `validate_config`).
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

from nsnet_jax import config_fields


def eval_ks(config: Any) -> list[int]:
    """The K values evaluation reports: `eval.num_select` ("1,2,4"), or model.num_select (parsed
    by `config_fields.eval_ks`; errors name the field)."""
    return list(config_fields.eval_ks(config))


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
