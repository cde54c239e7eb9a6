"""Read a user's videos (files via PyAV, or frame folders) into T short-side-resized JPEG frames.

Every failure is a `SkipVideo` with a human reason, so a build over hours of data logs and skips
the bad video instead of aborting halfway.
"""

from __future__ import annotations

import dataclasses
import io
import os
import re

import numpy as np
from PIL import Image

VIDEO_EXTENSIONS = (".mp4", ".avi", ".webm", ".mkv", ".mov", ".m4v")
FRAME_EXTENSIONS = (".jpg", ".jpeg", ".png")


class SkipVideo(Exception):
    """This video cannot be used; the message is the reason written to the skip report."""


@dataclasses.dataclass(frozen=True)
class Entry:
    """One video to build: where it is and its label tokens (ints or class names)."""

    video_id: str
    path: str
    labels: tuple[str, ...]
    num_frames_hint: int = 0  # AR-Net lists give the frame count of a frame folder


def sample_indices(n: int, num_frames: int, step: float = 0.0) -> np.ndarray:
    """T indices out of n: segment centres (uniform) or every `step` frames, centred (fps mode)."""
    if n <= 0:
        raise SkipVideo("empty video (0 frames)")
    if step <= 0:
        if n < num_frames:
            raise SkipVideo(f"shorter than asked: {n} frames < num_frames={num_frames}")
        return ((np.arange(num_frames) + 0.5) * n / num_frames).astype(np.int64)
    span = (num_frames - 1) * step + 1
    if span > n:
        raise SkipVideo(f"shorter than asked: {n} frames < {span:.0f} needed at this fps")
    start = (n - span) / 2
    return np.minimum(np.round(start + np.arange(num_frames) * step).astype(np.int64), n - 1)


def _resize_encode(img: Image.Image, short_side: int, quality: int) -> bytes:
    img = img.convert("RGB")
    w, h = img.size
    if short_side > 0 and min(w, h) != short_side:
        s = short_side / min(w, h)
        img = img.resize((max(1, round(w * s)), max(1, round(h * s))), Image.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _natural_key(name: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def read_frame_folder(
    path: str,
    num_frames: int,
    *,
    short_side: int,
    quality: int,
    fps_step: float = 0.0,
    expected: int = 0,
) -> list[bytes]:
    """T frames of an AR-Net/OCSampler frame folder (image_00001.jpg, ...), in natural order.

    `expected` is the frame count of the list line: a folder holding fewer frames is skipped (an
    interrupted extraction would otherwise be sampled over the part that is there).
    """
    if not os.path.isdir(path):
        raise SkipVideo(f"frame folder not found: {path}")
    names = sorted(
        (n for n in os.listdir(path) if n.lower().endswith(FRAME_EXTENSIONS)), key=_natural_key
    )
    if expected and len(names) < expected:
        raise SkipVideo(
            f"frame folder incomplete: {len(names)} frames on disk, the list says {expected}"
        )
    idx = sample_indices(len(names), num_frames, fps_step)
    out = []
    for i in idx:
        try:
            with Image.open(os.path.join(path, names[i])) as img:
                out.append(_resize_encode(img, short_side, quality))
        except Exception as e:  # noqa: BLE001 - PIL raises many types for bad data
            raise SkipVideo(f"undecodable frame {names[i]}: {type(e).__name__}: {e}") from e
    return out


def read_video_file(
    path: str, num_frames: int, *, short_side: int, quality: int, fps: float = 0.0
) -> list[bytes]:
    """T frames of a video file decoded with PyAV; only the chosen frames are converted."""
    import av

    if not os.path.isfile(path):
        raise SkipVideo(f"video file not found: {path}")
    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            n = int(stream.frames or 0)
            rate = float(stream.average_rate or 0)
            if n <= 0:  # some containers do not store a frame count: count by decoding
                n = sum(1 for _ in container.decode(video=0))
        step = 0.0
        if fps > 0:
            if rate <= 0:
                raise SkipVideo("fps sampling asked but the stream has no frame rate")
            step = rate / fps
        idx = sample_indices(n, num_frames, step)
        wanted = {int(i): [] for i in idx}
        with av.open(path) as container:
            for t, frame in enumerate(container.decode(video=0)):
                if t in wanted:
                    wanted[t] = _resize_encode(frame.to_image(), short_side, quality)
                if t >= idx[-1]:
                    break
    except SkipVideo:
        raise
    except Exception as e:  # noqa: BLE001 - FFmpeg errors come in many types
        raise SkipVideo(f"undecodable video: {type(e).__name__}: {e}") from e
    missing = [t for t, v in wanted.items() if not v]
    if missing:
        raise SkipVideo(
            f"stream ended early: {len(missing)} of {num_frames} sampled frames missing"
        )
    return [wanted[int(i)] for i in idx]
