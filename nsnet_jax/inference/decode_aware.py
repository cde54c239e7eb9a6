"""Decode-aware NSNet inference: decode what the networks need, at the resolution they need it.

The sampler sees all T frames at low resolution, so those come from a DCT-domain (PIL `draft`)
decode that skips most of the JPEG work; only the K frames the sampler picks are then decoded at
full resolution for the recognizer. Against decoding all T frames at full resolution this saves
(T - K) full decodes per video, which on a CPU host can cost as much as the networks.

Note: the sampler view here is a low-res decode of each frame on its own, whereas the training
pipeline (`input_pipeline.pipeline`) makes both views from one full decode. The two differ by
resampling only; `tests/test_bench.py` checks the selection against the pre-decoded path fed the
same sampler view.

A stored sampler view (`input_pipeline.sampler_cache --format=jpeg`: each frame's centre crop at
the sampler's size as a small JPEG) replaces the low-res decode of the full frames: pass it as
`sampler_jpegs`, or stream `StoredViewBatch`es. On a GPU, whose nvJPEG has no DCT-domain scaling,
it is what keeps the full-size decodes down to the K chosen frames.
"""

from __future__ import annotations

import concurrent.futures
import io
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor
from typing import Any, NamedTuple

import jax
import numpy as np
from PIL import Image

from nsnet_jax.inference.jitted import sampler_scores
from nsnet_jax.input_pipeline import decode
from nsnet_jax.input_pipeline.decode import decode_batch  # noqa: F401  (this module's public API)
from nsnet_jax.models.nsnet import NSNet
from nsnet_jax.models.selection import topk_indices

EncodedVideo = Sequence[bytes]


class StoredViewBatch(NamedTuple):
    """A batch's full-size JPEGs and its stored sampler view (T small JPEGs per video)."""

    videos: Sequence[EncodedVideo]
    sampler_jpegs: Sequence[EncodedVideo]


def synthetic_encoded_videos(
    batch: int,
    num_frames: int,
    short_side: int = 256,
    aspect: float = 4 / 3,
    seed: int = 0,
    quality: int = 90,
) -> list[list[bytes]]:
    """`batch` videos of `num_frames` JPEGs, `short_side` px high: smooth scenes, moving, noisy.

    Smooth content with texture noise compresses and decodes like camera frames; pure noise would
    make the JPEGs several times larger and slower to decode than real video.
    """
    rng = np.random.default_rng(seed)
    h, w = short_side, int(round(short_side * aspect))
    videos = []
    for _ in range(batch):
        base = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        big = np.asarray(Image.fromarray(base).resize((w + num_frames * 4, h), Image.BICUBIC))
        frames = []
        for t in range(num_frames):
            frame = big[:, 4 * t : 4 * t + w].astype(np.int16)
            frame = frame + rng.integers(-12, 13, frame.shape, dtype=np.int16)
            buf = io.BytesIO()
            Image.fromarray(np.clip(frame, 0, 255).astype(np.uint8)).save(
                buf, "JPEG", quality=quality
            )
            frames.append(buf.getvalue())
        videos.append(frames)
    return videos


def decode_batch_views(
    videos: Sequence[EncodedVideo],
    sizes: Sequence[int],
    *,
    boxes: Sequence[decode.Box | None] | None = None,
    flips: Sequence[bool] | None = None,
    pool: Executor | None = None,
) -> list[np.ndarray]:
    """All frames at every size, one decode per frame (the training pipeline's way)."""

    def one(b: int) -> list[np.ndarray]:
        return decode.decode_video_views(
            videos[b],
            sizes,
            None if boxes is None else boxes[b],
            flip=bool(flips[b]) if flips is not None else False,
            example_id=str(b),
        )

    per_video = decode.map_videos(pool, one, len(videos))
    return [np.stack([v[i] for v in per_video]) for i in range(len(sizes))]


def make_sample_fn(model: NSNet) -> Callable[..., dict[str, jax.Array]]:
    """Jitted f(variables, sampler_frames [B,T,h,w,3]) -> scores [B,T], indices [B,K]."""

    @jax.jit
    def sample(variables, sampler_frames):
        scores = sampler_scores(model)(variables, sampler_frames)
        return {"scores": scores, "indices": topk_indices(scores, model.num_select)}

    return sample


def make_recognize_selected_fn(model: NSNet) -> Callable[..., jax.Array]:
    """Jitted f(variables, frames [B,K,H,W,3]) -> logits: frames already selected on the host."""

    @jax.jit
    def recognize(variables, frames):
        return model.apply(variables, frames, method=NSNet.recognize)["logits"]

    return recognize


def make_decode_aware_fn(
    model: NSNet,
    sampler_size: int,
    recognizer_size: int,
    pool: Executor | None = None,
    sample: Callable[..., dict[str, jax.Array]] | None = None,
    decoder: Any = None,
) -> Callable[..., dict[str, Any]]:
    """f(variables, videos, boxes=None, flips=None, sampler_jpegs=None) -> logits, indices, ...

    Low-res decode of all T -> sampler -> top-K -> full-res decode of only those K -> recognizer.
    `sampler_jpegs`: the stored sampler view (centre crop at `sampler_size`, per video T JPEGs),
    decoded instead of the full frames for the sampler; `boxes` then apply to the K frames only.
    `timings` splits the call into decode_s and compute_s (wall clock, nothing overlapped).
    `sample` reuses an already compiled `make_sample_fn(model)`. `decoder`: an
    `input_pipeline.gpu_decode` decoder; default: nvJPEG on the GPU when JAX runs there and
    torchvision is installed, else PIL on the host with `pool`.
    """
    from nsnet_jax.input_pipeline import gpu_decode

    sample = sample or make_sample_fn(model)
    recognize = make_recognize_selected_fn(model)
    decoder = decoder or gpu_decode.make_decoder("auto", pool)

    def run(variables, videos, boxes=None, flips=None, sampler_jpegs=None) -> dict[str, Any]:
        t0 = time.perf_counter()
        low = jax.block_until_ready(
            sampler_view(decoder, sampler_size, videos, sampler_jpegs, boxes=boxes, flips=flips)
        )
        t1 = time.perf_counter()
        sampled = sample(variables, low)
        indices = np.asarray(sampled["indices"])  # the host needs them to decode: a sync point
        t2 = time.perf_counter()
        high = decoder.view(videos, recognizer_size, indices=indices, boxes=boxes, flips=flips)
        high = jax.block_until_ready(high)
        t3 = time.perf_counter()
        logits = jax.block_until_ready(recognize(variables, high))
        t4 = time.perf_counter()
        return {
            "logits": logits,
            "indices": indices,
            "scores": sampled["scores"],
            "timings": {"decode_s": (t1 - t0) + (t3 - t2), "compute_s": (t2 - t1) + (t4 - t3)},
        }

    run.sample, run.recognize, run.decoder = sample, recognize, decoder
    run.sizes = (sampler_size, recognizer_size)
    return run


def sampler_view(
    decoder: Any,
    size: int,
    videos: Sequence[EncodedVideo],
    sampler_jpegs: Sequence[EncodedVideo] | None = None,
    *,
    boxes: Sequence[decode.Box | None] | None = None,
    flips: Sequence[bool] | None = None,
) -> Any:
    """[B, T, size, size, 3]: from the stored view when there is one, else from the full frames."""
    if sampler_jpegs is None:
        return decoder.view(videos, size, boxes=boxes, flips=flips)
    if len(sampler_jpegs) != len(videos) or any(
        len(s) != len(v) for s, v in zip(sampler_jpegs, videos, strict=True)
    ):
        raise ValueError(
            f"The stored sampler view has {[len(s) for s in sampler_jpegs]} frames per video, "
            f"the videos {[len(v) for v in videos]}: it belongs to other videos (rewrite the "
            "sampler cache with --format=jpeg for this dataset)."
        )
    stored = decode.image_size(sampler_jpegs[0][0]) if sampler_jpegs and sampler_jpegs[0] else None
    if stored is not None and stored != (size, size):
        raise ValueError(
            f"The stored sampler view is {stored[0]}x{stored[1]} px, the sampler takes "
            f"{size}x{size}: write the sampler cache with --size={size}."
        )
    for b, box in enumerate(boxes or ()):
        centre = None if box is None else decode.center_box(*decode.image_size(videos[b][0]))
        if centre is not None and not np.allclose(box, centre, atol=0.5):
            raise ValueError(
                f"Video {b}: crop box {tuple(round(float(v), 1) for v in box)} is not the centre "
                f"crop {centre} the stored sampler view holds; the sampler and the recognizer "
                "would see different regions. Pass boxes=None, or no stored view."
            )
    return decoder.view(sampler_jpegs, size, flips=flips)  # already the centre crop


def run_overlapped(
    run: Callable[..., dict[str, Any]],
    variables: Any,
    batches: Iterable[Sequence[EncodedVideo] | StoredViewBatch],
) -> Iterator[dict[str, Any]]:
    """`make_decode_aware_fn`'s `run` over a stream of batches, decoding while the device computes.

    The host needs batch i's top-K before it can decode its K full-size frames, so a plain loop
    leaves the device idle during every decode. Here device work is queued ahead (JAX dispatches
    asynchronously) and read back only when needed:

        host (main):    wait idx_i | decode K of i        | wait idx_i+1 | decode K of i+1 ...
        host (thread):  decode sampler view of i+2 ...
        device:         sampler_i  | sampler_i+1          | recognizer_i | sampler_i+2 ...

    Yields, in order, one dict per batch with the same logits, indices and scores as `run`, and
    `timings.wait_s`: host time spent waiting for the device (the rest was decoding). A
    `StoredViewBatch` gives the sampler its stored view instead of a decode of the full frames.
    """
    sample, recognize, decoder = run.sample, run.recognize, run.decoder
    low_size, high_size = run.sizes

    def low_view(batch: Sequence[EncodedVideo] | StoredViewBatch) -> jax.Array:
        if isinstance(batch, StoredViewBatch):
            return jax.block_until_ready(sampler_view(decoder, low_size, *batch))
        return jax.block_until_ready(decoder.view(batch, low_size))

    def full_size(batch: Sequence[EncodedVideo] | StoredViewBatch) -> Sequence[EncodedVideo]:
        return batch.videos if isinstance(batch, StoredViewBatch) else batch

    stream = iter(batches)
    current = next(stream, None)
    if current is None:
        return
    worker = concurrent.futures.ThreadPoolExecutor(1)
    try:
        sampled = sample(variables, low_view(current))
        following = next(stream, None)
        next_low = worker.submit(low_view, following) if following is not None else None
        previous = None
        while current is not None:
            t0 = time.perf_counter()
            indices = np.asarray(sampled["indices"])  # waits for this batch's sampler only
            wait = time.perf_counter() - t0
            scores = sampled["scores"]
            if next_low is not None:  # queue the next sampler before decoding this batch's K
                sampled = sample(variables, next_low.result())
                after = next(stream, None)
                next_low = worker.submit(low_view, after) if after is not None else None
            else:
                after = None
            high = decoder.view(full_size(current), high_size, indices=indices)
            logits = recognize(variables, high)
            if previous is not None:
                yield _finish(*previous)
            previous = (logits, indices, scores, wait)
            current, following = following, after
        yield _finish(*previous)
    finally:
        worker.shutdown(wait=True)


def _finish(logits: jax.Array, indices: np.ndarray, scores: jax.Array, wait: float) -> dict:
    t0 = time.perf_counter()
    logits = jax.block_until_ready(logits)
    timings = {"wait_s": wait + time.perf_counter() - t0}
    return {"logits": logits, "indices": indices, "scores": scores, "timings": timings}
