"""The sampler's low-res view decoded once into uint8 arrays: a sampler stage that decodes nothing.

python -m nsnet_jax.input_pipeline.sampler_cache --dataset=NAME --data_dir=DIR --split=train \
    --size=128 --out_dir=CACHE [--num_threads=N]

Writes CACHE/<name with / as __>/<split>-<size>.npy (uint8 [N, T, size, size, 3], the centre-crop
view exactly as `decode.decode_frames(frames, size)` makes it) and a .json index beside it (video
ids, labels, evidence, shapes, the dataset it came from), so a cached sampler stage reads no
array_record at all. Training reads it by memmap when `config.data.
sampler_cache_dir=CACHE`: random access, no decode. Augmentation (random resized crop + flip,
inside the cached centre square) runs on the host (PIL, default), or, with
`config.data.sampler_cache_augment='step'`, in the jitted step: the batch then carries the
unaugmented frames plus `sampler_box` [B, 4] and `sampler_flip` [B], and the step calls
`nsnet_jax.augment.augment_in_step`. Disk: T * size^2 * 3
bytes per video, 7.9 GB per 10k videos at T=16, 128 px.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import sys
import time
from typing import Any

import numpy as np
from absl import flags
from PIL import Image

from nsnet_jax.flag_parsing import run_tool
from nsnet_jax.input_pipeline import decode, manifest

FORMAT_VERSION = 1
PER_VIDEO_KEYS = ("video_ids", "label", "labels", "evidence")


def cache_paths(cache_dir: str, dataset: str, split: str, size: int) -> tuple[str, str]:
    """(.npy array path, .json index path) of one split's cache."""
    base = os.path.join(cache_dir, dataset.replace("/", "__"), f"{split}-{size}")
    return base + ".npy", base + ".json"


class SamplerCache:
    """Read side: memmapped uint8 [N, T, s, s, 3], checked against the dataset it must match."""

    def __init__(self, cache_dir: str, dataset: str, split: str, size: int):
        self.array_path, self.index_path = cache_paths(cache_dir, dataset, split, size)
        fix = (
            f"Write it with: python -m nsnet_jax.input_pipeline.sampler_cache --dataset={dataset} "
            f"--split={split} --size={size} --out_dir={cache_dir} --data_dir=<the dataset's dir>"
            ", or unset config.data.sampler_cache_dir to decode JPEGs."
        )
        if not (os.path.isfile(self.index_path) and os.path.isfile(self.array_path)):
            raise FileNotFoundError(f"No sampler cache at {self.array_path}. {fix}")
        with open(self.index_path) as f:
            self.index = json.load(f)
        if not self.index.get("complete"):
            raise ValueError(f"Sampler cache {self.array_path} was not finished. {fix}")
        self.frames = np.load(self.array_path, mmap_mode="r")
        self.size = size
        self._fix = fix

    def check(self, num_examples: int, num_frames: int, fingerprint: str | None = None) -> None:
        """Raises if the cache does not hold this split's examples at this size, or was written
        from another dataset content (`fingerprint`: `manifest.fingerprint` of the dataset now);
        its labels and frames would silently disagree with the dataset's."""
        want = (num_examples, num_frames, self.size, self.size, 3)
        if self.frames.shape != want:
            raise ValueError(
                f"Sampler cache {self.array_path} has shape {self.frames.shape}, the dataset "
                f"needs {want}. Rewrite it (python -m nsnet_jax.input_pipeline.sampler_cache ...)."
            )
        recorded = self.index.get("dataset_fingerprint")
        if fingerprint and recorded and recorded != fingerprint:
            raise ValueError(
                f"Sampler cache {self.array_path} was written from dataset fingerprint "
                f"{recorded}; the dataset now has fingerprint {fingerprint} (rebuilt or changed "
                f"since). {self._fix}"
            )

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    def record(self, index: int) -> dict[str, Any]:
        """video_id, label, labels and evidence of example `index`, as its record has them."""
        i = int(index)
        return dict(
            video_id=self.index["video_ids"][i].encode(),
            label=self.index["label"][i],
            labels=self.index["labels"][i],
            evidence=np.asarray(self.index["evidence"][i], bool),
        )

    def video(self, index: int) -> np.ndarray:
        """uint8 [T, s, s, 3]: the centre-crop view of example `index`, read from disk."""
        return np.array(self.frames[int(index)])

    def draw(self, rng: np.random.Generator, crop_scale_min: float) -> tuple[decode.Box, bool]:
        """The random resized crop box (cached pixels) and flip of one video."""
        box = decode.random_resized_box(rng, self.size, self.size, (crop_scale_min, 1.0))
        return box, bool(rng.random() < 0.5)

    def augmented(self, index: int, rng: np.random.Generator, crop_scale_min: float) -> np.ndarray:
        """A random resized crop + flip of the cached view, the same for all T frames (host)."""
        box, flip = self.draw(rng, crop_scale_min)
        return crop_resize(self.frames[int(index)], box, self.size, flip=flip)


def crop_resize(frames: np.ndarray, box: decode.Box, size: int, *, flip: bool) -> np.ndarray:
    """uint8 [T, h, w, 3] -> [T, size, size, 3]: the same box and flip for every frame (PIL).

    The flip is PIL's (a C loop); a numpy ::-1 copy cost as much as the resize itself.
    """
    out = np.empty((frames.shape[0], size, size, 3), np.uint8)
    full = tuple(float(v) for v in box) == (0.0, 0.0, frames.shape[2], frames.shape[1])
    same = full and frames.shape[1:3] == (size, size)
    for t in range(frames.shape[0]):
        if same and not flip:
            out[t] = frames[t]
            continue
        img = Image.fromarray(np.asarray(frames[t]))
        if not same:
            img = img.resize((size, size), Image.BILINEAR, box=box)
        if flip:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        out[t] = np.asarray(img)
    return out


def write_cache(
    dataset: str,
    split: str,
    size: int,
    out_dir: str,
    *,
    data_dir: str | None = None,
    num_threads: int = 1,
    log_every: int = 500,
) -> dict[str, Any]:
    """Decodes every video of `split` once at `size` (centre crop) into the memmapped cache."""
    import tensorflow_datasets as tfds

    from nsnet_jax.input_pipeline import prepared

    builder = prepared.load_builder(dataset, data_dir)
    fields = prepared.dataset_meta_fields(builder)
    source = tfds.data_source(
        dataset, split=split, data_dir=data_dir, decoders={"video": prepared.PassThrough()}
    )
    n, t = len(source), fields["num_frames"]
    array_path, index_path = cache_paths(out_dir, dataset, split, size)
    os.makedirs(os.path.dirname(array_path), exist_ok=True)
    tmp = array_path + ".partial.npy"
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(n, t, size, size, 3))
    video_ids: list[str] = [""] * n
    labels: list[list[int]] = [[] for _ in range(n)]
    label: list[int] = [0] * n
    evidence: list[list[int]] = [[] for _ in range(n)]

    def one(i: int) -> None:
        record = source[i]
        vid = record["video_id"]
        vid = vid.decode() if isinstance(vid, bytes) else str(vid)
        frames = list(record["video"])
        if len(frames) != t:
            raise ValueError(f"Example {vid!r} has {len(frames)} frames, expected {t}")
        out[i] = decode.decode_frames(frames, size, example_id=vid)
        video_ids[i] = vid
        label[i] = int(record["label"])
        labels[i] = [int(v) for v in np.asarray(record.get("labels", [label[i]])).reshape(-1)]
        ev = record.get("evidence")
        evidence[i] = [int(v) for v in np.asarray(ev if ev is not None else np.zeros(t), bool)]

    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max(1, num_threads)) as pool:
        for done, _ in enumerate(pool.map(one, range(n)), 1):
            if done % log_every == 0 or done == n:
                rate = done / (time.perf_counter() - start)
                eta = (n - done) / rate
                print(f"sampler_cache {split}: {done}/{n} videos, {rate:.1f}/s, ETA {eta:.0f}s")
    out.flush()
    out = None  # closes the memmap before the rename
    os.replace(tmp, array_path)
    index = dict(
        format_version=FORMAT_VERSION,
        dataset=dataset,
        split=split,
        size=size,
        num_examples=n,
        num_frames=t,
        crop="center",
        video_ids=video_ids,
        label=label,
        labels=labels,
        evidence=evidence,
        bytes=os.path.getsize(array_path),
        dataset_fingerprint=manifest.fingerprint(builder.data_dir),
        complete=True,
    )
    with open(index_path + ".tmp", "w") as f:
        json.dump(index, f)
    os.replace(index_path + ".tmp", index_path)
    return index


def define_flags(fv: flags.FlagValues) -> None:
    """This command's flags (names and defaults as documented above)."""
    flags.DEFINE_string("dataset", None, "TFDS name", flag_values=fv)
    flags.mark_flag_as_required("dataset", flag_values=fv)
    flags.DEFINE_string("split", "train", "split to cache", flag_values=fv)
    flags.DEFINE_string("data_dir", None, "TFDS data_dir", flag_values=fv)
    flags.DEFINE_integer("size", 128, "config.data.sampler_size", flag_values=fv)
    flags.DEFINE_string("out_dir", None, "what config.data.sampler_cache_dir names", flag_values=fv)
    flags.mark_flag_as_required("out_dir", flag_values=fv)
    flags.DEFINE_integer("num_threads", os.cpu_count() or 1, "decode threads", flag_values=fv)


def main(argv: list[str] | None = None) -> int:
    return run_tool(_main, define_flags, argv, doc=__doc__)


def _main(args: flags.FlagValues, _: list[str]) -> int:
    start = time.perf_counter()
    index = write_cache(
        args.dataset,
        args.split,
        args.size,
        args.out_dir,
        data_dir=args.data_dir,
        num_threads=args.num_threads,
    )
    seconds = time.perf_counter() - start
    summary = {k: v for k, v in index.items() if k not in PER_VIDEO_KEYS}
    summary.update(
        path=cache_paths(args.out_dir, args.dataset, args.split, args.size)[0],
        seconds=round(seconds, 2),
        videos_per_s=round(index["num_examples"] / seconds, 2),
        gb_per_10k_videos=round(index["bytes"] / max(1, index["num_examples"]) * 1e4 / 1e9, 2),
    )
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
