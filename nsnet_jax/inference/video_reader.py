"""Decode-aware reading of one video for predict: T small frames now, K full-res frames on demand.

A video file is decoded once (PyAV), up to its last sampled frame; the T sampled frames are kept as
decoded pictures, converted to RGB only at the sampler's size. After the sampler has chosen, only
the K selected pictures are converted at the recognizer's size: no second decode and no seek.
A frame folder reads the T sampled images with a reduced-size JPEG decode (PIL draft) for the
sampler and decodes only the K selected ones at full resolution.

Frames are sampled as `video_folder` samples them (`video_io.sample_indices`: T segment centres,
or every rate/fps frames) and cropped as evaluation crops them (centre square, bilinear resize).
Training frames went through one more step, a short-side resize to 256 px and a JPEG encode at
build time; predict resamples from the source directly, which the equivalence test measures.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image

from nsnet_jax.input_pipeline import decode, video_io
from nsnet_jax.input_pipeline.video_io import FRAME_EXTENSIONS, SkipVideo, sample_indices


@dataclasses.dataclass
class OpenVideo:
    """One video's T candidates: the sampler view, their times, and a way to get K at full size."""

    low: np.ndarray  # uint8 [T, s, s, 3]
    frame_numbers: np.ndarray  # [T] index of each candidate in the source
    timestamps: list[float | None]  # [T] seconds, None where unknown
    _full: Callable[[Sequence[int]], np.ndarray]

    def full(self, chosen: Sequence[int]) -> np.ndarray:
        """uint8 [K, H, W, 3]: the chosen candidates (positions in 0..T-1) at full size."""
        return self._full(chosen)


def _square(img: Image.Image, size: int) -> np.ndarray:
    w, h = img.size
    return np.asarray(img.convert("RGB").resize((size, size), Image.BILINEAR, box=_box(w, h)))


def _box(w: int, h: int) -> decode.Box:
    return decode.center_box(w, h)


def _natural_key(name: str):
    import re

    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def open_frame_folder(
    path: str,
    num_frames: int,
    sampler_size: int,
    recognizer_size: int,
    fps: float = 0.0,
    pipeline_views: bool = False,
) -> OpenVideo:
    """T frames of a folder of images, uniformly sampled as `video_io.read_frame_folder` does.

    `pipeline_views`: decode every candidate once at full size and make both views from it, as
    the training/evaluation pipeline does (bit-identical to evaluation on exported splits, and
    T full decodes instead of K).
    """
    try:
        names = sorted(
            (n for n in os.listdir(path) if n.lower().endswith(FRAME_EXTENSIONS)),
            key=_natural_key,
        )
    except OSError as e:
        raise SkipVideo(f"unreadable frame folder: {e}") from e
    idx = sample_indices(len(names), num_frames)
    blobs = []
    for i in idx:
        with open(os.path.join(path, names[i]), "rb") as f:
            blobs.append(f.read())

    def decode_at(t: int, size: int) -> np.ndarray:
        try:
            return decode.decode_frame(blobs[t], size)
        except Exception as e:  # noqa: BLE001 - PIL raises many types for bad data
            raise SkipVideo(f"undecodable frame {names[idx[t]]}: {type(e).__name__}: {e}") from e

    if pipeline_views:
        try:
            low, high = decode.decode_video_views(blobs, (sampler_size, recognizer_size))
        except decode.CorruptFrameError as e:
            raise SkipVideo(str(e)) from e
        times = [float(i) / fps if fps > 0 else None for i in idx]
        return OpenVideo(low, idx, times, lambda chosen: high[np.asarray(chosen, int)])
    low = np.stack([decode_at(t, sampler_size) for t in range(len(idx))])
    times = [float(i) / fps if fps > 0 else None for i in idx]
    return OpenVideo(
        low,
        idx,
        times,
        lambda chosen: np.stack([decode_at(int(t), recognizer_size) for t in chosen]),
    )


def open_video_file(
    path: str,
    num_frames: int,
    sampler_size: int,
    recognizer_size: int,
    sample_fps: float = 0.0,
    all_full: bool = False,
    mode: str = "exact",
) -> OpenVideo:
    """T frames of a video file, decoded once; `sample_fps` > 0: at that rate (centred window).

    Read by input_pipeline.video_io's reader, the one dataset builds use (`mode`: "exact" seeks
    to the keyframe before each sampled frame, "keyframe" is approximate, "sequential" decodes
    everything up to the last sampled frame).
    `all_full`: convert all T candidates at full size up front, both views from that (the
    baseline that decode-aware reading is measured against).
    """
    idx, frames = video_io.decode_sampled_frames(path, num_frames, fps=sample_fps, mode=mode)

    def view(frame, size: int) -> np.ndarray:
        w, h = frame.width, frame.height
        s = 2 * size / min(w, h)  # like a JPEG draft: scale in the decoder to >= 2x, then resize
        if s < 1:
            img = frame.to_image(width=max(1, round(w * s)), height=max(1, round(h * s)))
        else:
            img = frame.to_image()
        return _square(img, size)

    times = [float(f.time) if f.time is not None else None for f in frames]
    if all_full:
        high = np.stack([view(f, recognizer_size) for f in frames])
        low = np.stack([_square(Image.fromarray(x), sampler_size) for x in high])
        return OpenVideo(low, idx, times, lambda chosen: high[np.asarray(chosen, int)])
    low = np.stack([view(f, sampler_size) for f in frames])
    return OpenVideo(
        low,
        idx,
        times,
        lambda chosen: np.stack(
            [view(frames[int(t)], recognizer_size) for t in chosen]
        ),  # fmt: skip
    )


def open_source(
    path: str,
    kind: str,
    num_frames: int,
    sampler_size: int,
    recognizer_size: int,
    *,
    folder_fps: float = 0.0,
    sample_fps: float = 0.0,
    pipeline_views: bool = False,
) -> OpenVideo:
    """A `sources.Source` opened; every failure is a `SkipVideo` with the reason.

    `folder_fps`: the rate frame folders were extracted at (their timestamps; 0: unknown).
    `sample_fps`: sample video files at this rate instead of T segment centres.
    `pipeline_views`: all T candidates at full size, both views from them (T full-size
    conversions instead of K; for frame folders bit-identical to evaluation).
    """
    try:
        if kind == "frames":
            return open_frame_folder(
                path, num_frames, sampler_size, recognizer_size, folder_fps, pipeline_views
            )
        return open_video_file(
            path, num_frames, sampler_size, recognizer_size, sample_fps, pipeline_views
        )
    except SkipVideo:
        raise
    except Exception as e:  # noqa: BLE001 - a bad file must not stop the run
        raise SkipVideo(f"unreadable: {type(e).__name__}: {e}") from e
