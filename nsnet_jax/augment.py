"""Crop, resize and flip on the device: the jitted kernel the GPU decoder uses for its views, and
the sampler cache's augmentation done inside the train step (data.sampler_cache_augment='step').

Both the input pipeline and the train step use it, so it lives below both.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp


@functools.partial(jax.jit, static_argnames=("size",))
def crop_resize(frames: jax.Array, boxes: jax.Array, flips: jax.Array, size: int) -> jax.Array:
    """uint8 [N, H, W, 3] -> uint8 [N, size, size, 3]: crop box [N, 4] (x0, y0, x1, y1 in pixels),
    antialiased bilinear resize, then a horizontal flip where flips [N] is set."""

    def one(img, box, flip):
        x0, y0, x1, y1 = box[0], box[1], box[2], box[3]
        scale = jnp.stack([size / (y1 - y0), size / (x1 - x0)])
        out = jax.image.scale_and_translate(
            img.astype(jnp.float32),
            (size, size, img.shape[-1]),
            (0, 1),
            scale,
            -jnp.stack([y0, x0]) * scale,
            method="linear",
            antialias=True,
        )
        out = jnp.where(flip, out[:, ::-1], out)
        return jnp.clip(jnp.round(out), 0, 255).astype(jnp.uint8)

    return jax.vmap(one)(frames, boxes.astype(jnp.float32), flips)


def augment_in_step(frames: Any, boxes: Any, flips: Any) -> Any:
    """In a jitted step: uint8 [B, T, s, s, 3] with `sampler_box` [B, 4] and `sampler_flip` [B]
    (what create_dataset adds under data.sampler_cache_augment='step') -> the augmented frames."""
    b, t, h, w, c = frames.shape
    out = crop_resize(
        frames.reshape(b * t, h, w, c), jnp.repeat(boxes, t, axis=0), jnp.repeat(flips, t), w
    )
    return out.reshape(b, t, w, w, c)
