"""JPEG decode and crop/resize on the GPU (nvJPEG via torchvision), handed to JAX by DLPack.

A host core decodes ~100 videos/s (T=16, 256 px); one GPU runs NSNet inference at thousands, so
on a GPU the frames are decoded there: `torchvision.io.decode_jpeg(..., device="cuda")` on a batch
of JPEG byte strings, then `jax.dlpack.from_dlpack` (zero copy), then `crop_resize` (jitted JAX,
antialiased bilinear, one box and flip per frame). Each frame is decoded once: the decode-aware
path's K recognizer frames are taken from the frames decoded for the sampler view. With a stored
sampler view (`sampler_cache --format=jpeg`: T small JPEGs) only the K chosen full-size frames are
decoded.

`make_decoder("auto")` picks the GPU decoder when JAX's backend is GPU and torchvision has CUDA,
else the host decoder (PIL with the DCT draft, `input_pipeline.decode`); both have the same
`view()`. With JAX and torch in one process, start JAX with XLA_PYTHON_CLIENT_MEM_FRACTION (e.g.
0.6) or XLA_PYTHON_CLIENT_PREALLOCATE=false so that torch's decoder has GPU memory left.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from nsnet_jax.augment import crop_resize
from nsnet_jax.input_pipeline import decode

EncodedVideo = Sequence[bytes]


def gpu_decode_status() -> tuple[bool, str]:
    """(usable, why): JAX on GPU and torchvision's CUDA JPEG decoder importable."""
    backend = jax.default_backend()
    if backend != "gpu":
        return False, f"JAX backend is {backend!r}, not 'gpu'"
    try:
        import torch
        import torchvision.io  # noqa: F401

        if not torch.cuda.is_available():
            return False, "torch has no CUDA device (a CPU-only torch build?)"
        name = torch.cuda.get_device_name(0)
    except Exception as e:  # noqa: BLE001 - ImportError, or a CUDA library that fails to load
        return False, f"torch/torchvision unusable ({type(e).__name__}: {e}); host decode instead"
    return True, f"torch {torch.__version__} CUDA decode on {name}"


class HostDecoder:
    """PIL decode on the host (DCT draft, thread pool): every platform, numpy out."""

    name = "host"

    def __init__(self, pool: Executor | None = None):
        self.pool = pool

    def view(
        self,
        videos: Sequence[EncodedVideo],
        size: int,
        *,
        indices: np.ndarray | None = None,
        boxes: Sequence[decode.Box | None] | None = None,
        flips: Sequence[bool] | None = None,
    ) -> np.ndarray:
        """uint8 [B, n, size, size, 3]: all frames, or only `indices` [B, K] of each video."""
        return decode.decode_batch(
            videos, size, indices=indices, boxes=boxes, flips=flips, pool=self.pool
        )


class GpuDecoder:
    """nvJPEG decode of whole batches; frames stay on the device for the next view of the batch."""

    name = "gpu"

    def __init__(self, device: str = "cuda"):
        import torch
        import torchvision.io

        self._torch, self._tvio, self.device = torch, torchvision.io, device
        # (batch, its decoded frames) of the last three batches, newest first, in one attribute:
        # the overlapped loop decodes batch i+2's sampler view on a thread while it takes batch
        # i's K frames, and batch i+1's is decoded by then
        self._recent: tuple[tuple[Sequence[EncodedVideo], list[list[Any]]], ...] = ()

    def _decode_images(self, frames: Sequence[bytes]) -> list[Any]:
        """JPEG bytes -> uint8 [H, W, 3] torch views on the GPU (one batched nvJPEG call)."""
        torch = self._torch
        with warnings.catch_warnings():  # bytes are read-only; torch warns but only reads them
            warnings.simplefilter("ignore", UserWarning)
            data = [torch.frombuffer(f, dtype=torch.uint8) for f in frames]
        images = self._tvio.decode_jpeg(data, mode=self._tvio.ImageReadMode.RGB, device=self.device)
        return [img.permute(1, 2, 0) for img in images]

    def _stack_to_jax(self, images: list[Any]) -> jax.Array:
        """Same-shape device images -> one uint8 [n, H, W, 3] jax.Array, zero copy by DLPack."""
        return jax.dlpack.from_dlpack(self._torch.stack(images).contiguous())

    def _decode_batch(
        self, videos: Sequence[EncodedVideo], positions: Sequence[Sequence[int]] | None = None
    ) -> list[list[Any]]:
        """Decoded frames per video; a corrupt one is named by its video and `positions` (the
        frame indices in the video, where only some frames are passed)."""
        flat = [f for v in videos for f in v]
        try:
            images = self._decode_images(flat)
        except Exception:  # noqa: BLE001 - find the frame, then name it
            for b, v in enumerate(videos):
                for t, f in enumerate(v):
                    try:
                        self._decode_images([f])
                    except Exception as bad:  # noqa: BLE001
                        frame = t if positions is None else positions[b][t]
                        raise decode.CorruptFrameError(
                            f"Example {b!r}: frame {frame} is not a decodable JPEG on the GPU "
                            f"({type(bad).__name__}: {bad}). Rebuild the dataset or drop it."
                        ) from bad
            raise
        out, i = [], 0
        for v in videos:
            out.append(images[i : i + len(v)])
            i += len(v)
        return out

    def view(
        self,
        videos: Sequence[EncodedVideo],
        size: int,
        *,
        indices: np.ndarray | None = None,
        boxes: Sequence[decode.Box | None] | None = None,
        flips: Sequence[bool] | None = None,
    ) -> jax.Array:
        """uint8 [B, n, size, size, 3] on the GPU; another view of this batch decodes nothing.

        All frames of a batch are decoded and kept for its next view (the last three batches);
        `indices` of a batch not kept decodes only those frames (e.g. when the sampler view came
        from a stored low-resolution view, other JPEGs).
        """
        picks = [
            range(len(v)) if indices is None else [int(t) for t in indices[b]]
            for b, v in enumerate(videos)
        ]
        decoded = next((frames for batch, frames in self._recent if batch is videos), None)
        if decoded is None and indices is None:
            decoded = self._decode_batch(videos)
            self._recent = ((videos, decoded), *self._recent[:2])
        if decoded is not None:
            chosen = [[decoded[b][t] for t in ts] for b, ts in enumerate(picks)]
        else:
            selected = [[v[t] for t in ts] for v, ts in zip(videos, picks, strict=True)]
            chosen = self._decode_batch(selected, picks)
        items = []  # (frame, box, flip) in output order
        for b, frames in enumerate(chosen):
            for img in frames:
                h, w = int(img.shape[0]), int(img.shape[1])
                box = None if boxes is None else boxes[b]
                box = decode.center_box(w, h) if box is None else tuple(float(v) for v in box)
                items.append((img, box, bool(flips[b]) if flips is not None else False))
        out = _resize_grouped(items, size, self._stack_to_jax)
        return out.reshape(len(videos), -1, size, size, 3)


def _resize_grouped(
    items: list[tuple[Any, decode.Box, bool]], size: int, stack: Callable[[list[Any]], jax.Array]
) -> jax.Array:
    """crop_resize per group of equal frame shapes (one jitted call each), in input order."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, (img, _, _) in enumerate(items):
        groups.setdefault(tuple(img.shape), []).append(i)
    parts, order = [], []
    for idx in groups.values():
        frames = stack([items[i][0] for i in idx])
        boxes = jnp.asarray([items[i][1] for i in idx], jnp.float32)
        flips = jnp.asarray([items[i][2] for i in idx], bool)
        parts.append(crop_resize(frames, boxes, flips, size))
        order.extend(idx)
    out = jnp.concatenate(parts) if len(parts) > 1 else parts[0]
    if order != sorted(order):
        out = out[np.argsort(order)]
    return out


def make_decoder(kind: str = "auto", pool: Executor | None = None) -> HostDecoder | GpuDecoder:
    """ "auto": the GPU decoder where `gpu_decode_status()` allows, else the host one."""
    if kind not in ("auto", "gpu", "host"):
        raise ValueError(f"decoder kind {kind!r}: use auto, gpu or host")
    if kind == "host":
        return HostDecoder(pool)
    ok, why = gpu_decode_status()
    if ok:
        return GpuDecoder()
    if kind == "gpu":
        raise RuntimeError(f"GPU JPEG decoding is not available: {why}. Use kind='host'.")
    return HostDecoder(pool)
