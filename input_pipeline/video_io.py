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


STILL_IMAGE = (
    "a still image, not a video (1 frame): give a video file "
    f"({'/'.join(e[1:] for e in VIDEO_EXTENSIONS)}) or a folder of the video's frames "
    "(image_00001.jpg, ... in order)"
)


def _is_still_image(container) -> bool:
    """FFmpeg reads a single JPEG/PNG/... as a one-frame video ('jpeg_pipe', 'png_pipe', ...)."""
    return container.format.name == "image2" or container.format.name.endswith("_pipe")


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
    if os.path.isfile(path) and path.lower().endswith(FRAME_EXTENSIONS):
        raise SkipVideo(STILL_IMAGE)
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


DECODE_MODES = ("exact", "keyframe", "sequential")


def _packet_index(container, stream) -> tuple[np.ndarray, np.ndarray] | None:
    """Presentation timestamps of every frame (sorted) and of the keyframes, from the packets
    alone (no decoding); None when some packet has no timestamp (then only sequential works)."""
    pts, keys = [], []
    for packet in container.demux(stream):
        if packet.size == 0:  # the demuxer's final empty packet
            continue
        if packet.pts is None:
            return None
        pts.append(packet.pts)
        if packet.is_keyframe:
            keys.append(packet.pts)
    if not keys:
        return None
    return np.sort(np.asarray(pts, np.int64)), np.sort(np.asarray(keys, np.int64))


def _decode_sequential(container, stream, idx: np.ndarray) -> dict[int, object]:
    """Frames idx (presentation order) by decoding every frame up to the last one."""
    wanted, out = set(int(i) for i in idx), {}
    for t, frame in enumerate(container.decode(stream)):
        if t in wanted:
            out[t] = frame
        if t >= idx[-1]:
            break
    return out


def _sample(n: int, num_frames: int, fps: float, rate: float) -> np.ndarray:
    step = 0.0
    if fps > 0:
        if rate <= 0:
            raise SkipVideo("fps sampling asked but the stream has no frame rate")
        step = rate / fps
    return sample_indices(n, num_frames, step)


def _key_before(keys: np.ndarray, target: int) -> int:
    return int(keys[max(0, np.searchsorted(keys, target, side="right") - 1)])


def _decode_keyframes(container, stream, idx, pts, keys) -> dict | None:
    """The keyframe at or before each of frames idx (approximate: up to one GOP early).

    Each keyframe packet is decoded alone (decode, drain, reset), so no other packet is decoded.
    """
    ctx = stream.codec_context
    out: dict[int, object] = {}
    by_key: dict[int, object] = {}
    for t in sorted(set(int(i) for i in idx)):
        key = _key_before(keys, int(pts[t]))
        if key not in by_key:
            container.seek(key, stream=stream, backward=True, any_frame=False)
            for packet in container.demux(stream):
                if packet.pts is not None and packet.pts >= key:
                    break
            else:
                return None
            if packet.pts != key:
                return None
            frames = list(ctx.decode(packet)) + list(ctx.decode(None))
            ctx.flush_buffers()
            if not frames:
                return None
            by_key[key] = frames[0]
        out[t] = by_key[key]
    return out


def _decode_seeking(container, stream, idx, pts, keys) -> dict | None:
    """Frames idx by seeking to the keyframe at or before each and decoding forward to it.

    Gives the frames sequential decoding gives (matched by timestamp). Packets that are not a
    sampled frame are decoded with skip_frame=NONREF: frames no other frame refers to are not
    decoded at all. None: the stream did not behave, so the caller decodes sequentially.
    """
    ctx = stream.codec_context
    wanted = {int(pts[int(t)]): int(t) for t in idx}
    need = sorted(wanted)
    out: dict[int, object] = {}
    last = None  # pts of the last frame the decoder gave since the last seek
    i = 0
    while i < len(need):
        key = _key_before(keys, need[i])
        if last is None or key > last:
            container.seek(key, stream=stream, backward=True, any_frame=False)
            last = -(2**62)
        for packet in container.demux(stream):
            ctx.skip_frame = "DEFAULT" if packet.pts in wanted else "NONREF"
            for frame in ctx.decode(packet):
                if frame.pts is None:
                    return None
                last = frame.pts
                t = wanted.get(frame.pts)
                if t is not None and t not in out:
                    out[t] = frame
            if wanted[need[i]] in out:
                break
        else:  # end of stream
            return out if len(out) == len(wanted) else None
        while i < len(need) and wanted[need[i]] in out:
            i += 1
    ctx.skip_frame = "DEFAULT"
    return out


def decode_sampled_frames(
    path: str, num_frames: int, *, fps: float = 0.0, mode: str = "exact", threads: int = 0
) -> tuple[np.ndarray, list]:
    """(frame numbers [T], one decoded `av.VideoFrame` per number) of a video file.

    The one long-video reader: dataset builds (`read_video_file`) and `predict` use it. mode
    "exact" seeks to the keyframe before each sampled frame and decodes forward (the same frames as
    decoding everything, much faster on long videos); "keyframe" returns the keyframe at or before
    each sampled frame (approximate, for very long videos); "sequential" decodes every frame up to
    the last sampled one. `threads`: FFmpeg decoding threads (0: FFmpeg's choice; 1 when one
    process per core already fills the machine). Frames stay undecoded to RGB, so a caller
    converts each at the sizes it needs (`frame.to_image(width=..., height=...)`).
    """
    import av

    if mode not in DECODE_MODES:
        raise ValueError(f"mode must be one of {DECODE_MODES}, got {mode!r}")
    if not os.path.isfile(path):
        raise SkipVideo(f"video file not found: {path}")
    try:
        images = None
        with av.open(path) as container:
            if _is_still_image(container):
                raise SkipVideo(STILL_IMAGE)
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            stream.codec_context.thread_count = threads
            n = int(stream.frames or 0)
            rate = float(stream.average_rate or 0)
            index = None if mode == "sequential" else _packet_index(container, stream)
            if n <= 0 and index is not None:  # some containers do not store a frame count
                n = len(index[0])
            if n <= 0:  # nor timestamps: count by decoding
                container.seek(0)
                n = sum(1 for _ in container.decode(stream))
            idx = _sample(n, num_frames, fps, rate)
            if index is not None and len(index[0]) == n:
                if mode == "keyframe":
                    images = _decode_keyframes(container, stream, idx, *index)
                else:
                    images = _decode_seeking(container, stream, idx, *index)
        if images is None:
            with av.open(path) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                stream.codec_context.thread_count = threads
                images = _decode_sequential(container, stream, idx)
    except SkipVideo:
        raise
    except Exception as e:  # noqa: BLE001 - FFmpeg errors come in many types
        raise SkipVideo(f"undecodable video: {type(e).__name__}: {e}") from e
    missing = [t for t in set(int(i) for i in idx) if t not in images]
    if missing:
        raise SkipVideo(
            f"stream ended early: {len(missing)} of {num_frames} sampled frames missing"
        )
    return idx, [images[int(i)] for i in idx]


def read_video_file(
    path: str,
    num_frames: int,
    *,
    short_side: int,
    quality: int,
    fps: float = 0.0,
    mode: str = "exact",
    threads: int = 0,
) -> list[bytes]:
    """T frames of a video file as JPEG bytes at `short_side` (see `decode_sampled_frames`)."""
    _, frames = decode_sampled_frames(path, num_frames, fps=fps, mode=mode, threads=threads)
    return [_resize_encode(frame.to_image(), short_side, quality) for frame in frames]
