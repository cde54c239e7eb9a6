"""The sampler's low-res view decoded once: a sampler stage that decodes no full-size frame.

python -m nsnet_jax.input_pipeline.sampler_cache --dataset=NAME --data_dir=DIR --split=train \
    --size=128 --out_dir=CACHE [--format=uint8|jpeg] [--jpeg_quality=90] [--num_threads=N]

Writes CACHE/<name with / as __>/<split>-<size>.npy (uint8 [N, T, size, size, 3], the centre-crop
view exactly as `decode.decode_frames(frames, size)` makes it) and a .json index beside it (video
ids, labels, evidence, shapes, the dataset it came from), so a cached sampler stage reads no
array_record at all. Training reads it by memmap when `config.data.sampler_cache_dir=CACHE`:
random access, no decode. Augmentation (random resized crop + flip, inside the cached centre
square) runs on the host (PIL, default), or, with `config.data.sampler_cache_augment='step'`, in
the jitted step: the batch then carries the unaugmented frames plus `sampler_box` [B, 4] and
`sampler_flip` [B], and the step calls `nsnet_jax.augment.augment_in_step`. Disk: T * size^2 * 3
bytes per video, 7.9 GB per 10k videos at T=16, 128 px.

`--format=jpeg` stores the same view as one JPEG per frame (4:4:4, `--jpeg_quality`):
<split>-<size>.jpeg holds the bytes back to back, <split>-<size>.offsets.npy where each starts.
At 128 px a frame takes ~6 KiB instead of 48 (below ~32 px JPEG's headers make it larger than
uint8), for a decode of T small JPEGs per video. It is also the stored low-resolution sampler view
of the decode-aware path (`SamplerCache.encoded`; `decode.encode_view` makes one video's;
`inference.decode_aware.StoredViewBatch` streams it): the sampler reads it and only the K frames it
picks are decoded at full size.
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
FORMATS = ("uint8", "jpeg")


def cache_paths(
    cache_dir: str, dataset: str, split: str, size: int, fmt: str = "uint8"
) -> tuple[str, str]:
    """(data path, .json index path) of one split's cache: .npy (uint8) or .jpeg (jpeg)."""
    base = os.path.join(cache_dir, dataset.replace("/", "__"), f"{split}-{size}")
    return base + (".npy" if fmt == "uint8" else ".jpeg"), base + ".json"


def offsets_path(jpeg_path: str) -> str:
    """Where a JPEG cache keeps the start of each frame's bytes (int64 [N * T + 1])."""
    return jpeg_path[: -len(".jpeg")] + ".offsets.npy"


class SamplerCache:
    """Read side: the centre-crop view [N, T, s, s, 3], checked against the dataset it must match.

    uint8 caches are memmapped; JPEG caches memmap their bytes and decode a video when asked.
    """

    def __init__(self, cache_dir: str, dataset: str, split: str, size: int):
        self.index_path = cache_paths(cache_dir, dataset, split, size)[1]
        command = (
            f"python -m nsnet_jax.input_pipeline.sampler_cache --dataset={dataset} "
            f"--split={split} --size={size} --out_dir={cache_dir} --data_dir=<the dataset's dir>"
        )
        if not os.path.isfile(self.index_path):
            raise FileNotFoundError(
                f"No sampler cache at {self.index_path}. Write it with: {command} "
                "[--format=jpeg], or unset config.data.sampler_cache_dir to decode JPEGs."
            )
        with open(self.index_path) as f:
            self.index = json.load(f)
        self.format = self.index.get("format", "uint8")
        self.array_path = cache_paths(cache_dir, dataset, split, size, self.format)[0]
        fix = f"Rewrite it with: {command} --format={self.format}"
        data_paths = [self.array_path]
        if self.format == "jpeg":
            data_paths.append(offsets_path(self.array_path))
        if not self.index.get("complete") or not all(map(os.path.isfile, data_paths)):
            raise ValueError(f"Sampler cache {self.array_path} was not finished. {fix}")
        if self.format == "jpeg":
            self.jpeg_bytes = np.memmap(self.array_path, np.uint8, mode="r")
            self.offsets = np.load(data_paths[1])
            n, t = self.index["num_examples"], self.index["num_frames"]
            self.shape = (n, t, size, size, 3)
            if self.offsets.shape != (n * t + 1,) or self.offsets[-1] != self.jpeg_bytes.size:
                raise ValueError(f"Sampler cache {self.array_path} is truncated or damaged. {fix}")
        else:
            self.frames = np.load(self.array_path, mmap_mode="r")
            self.shape = tuple(self.frames.shape)
        self.size = size
        self._fix = fix

    def check(self, num_examples: int, num_frames: int, fingerprint: str | None = None) -> None:
        """Raises if the cache does not hold this split's examples at this size, or was written
        from another dataset content (`fingerprint`: `manifest.fingerprint` of the dataset now);
        its labels and frames would silently disagree with the dataset's."""
        want = (num_examples, num_frames, self.size, self.size, 3)
        if self.shape != want:
            raise ValueError(
                f"Sampler cache {self.array_path} has shape {self.shape}, the dataset "
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
        return int(self.shape[0])

    def _checked(self, index: int) -> int:
        i = int(index)
        if not 0 <= i < len(self):
            raise IndexError(f"Example {i} is not in {self.array_path} ({len(self)} examples)")
        return i

    def record(self, index: int) -> dict[str, Any]:
        """video_id, label, labels and evidence of example `index`, as its record has them."""
        i = self._checked(index)
        return dict(
            video_id=self.index["video_ids"][i].encode(),
            label=self.index["label"][i],
            labels=self.index["labels"][i],
            evidence=np.asarray(self.index["evidence"][i], bool),
        )

    def encoded(self, index: int) -> list[bytes]:
        """The T stored JPEGs of example `index` (a JPEG cache only): the decode-aware path's
        sampler view, already cropped and sized."""
        if self.format != "jpeg":
            raise ValueError(
                f"Sampler cache {self.array_path} stores uint8 frames, not JPEGs: rewrite it "
                "with --format=jpeg, or read the frames with video()."
            )
        i, t = self._checked(index), self.shape[1]
        ends = self.offsets[i * t : (i + 1) * t + 1]
        return [self.jpeg_bytes[a:b].tobytes() for a, b in zip(ends[:-1], ends[1:], strict=True)]

    def video(self, index: int) -> np.ndarray:
        """uint8 [T, s, s, 3]: the centre-crop view of example `index`, read from disk."""
        i = self._checked(index)
        if self.format == "jpeg":
            vid = self.index["video_ids"][i]
            return decode.decode_frames(self.encoded(i), self.size, example_id=vid)
        return np.array(self.frames[i])

    def draw(self, rng: np.random.Generator, crop_scale_min: float) -> tuple[decode.Box, bool]:
        """The random resized crop box (cached pixels) and flip of one video."""
        box = decode.random_resized_box(rng, self.size, self.size, (crop_scale_min, 1.0))
        return box, bool(rng.random() < 0.5)

    def augmented(self, index: int, rng: np.random.Generator, crop_scale_min: float) -> np.ndarray:
        """A random resized crop + flip of the cached view, the same for all T frames (host)."""
        box, flip = self.draw(rng, crop_scale_min)
        frames = self.video(index) if self.format == "jpeg" else self.frames[self._checked(index)]
        return crop_resize(frames, box, self.size, flip=flip)


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
    fmt: str = "uint8",
    jpeg_quality: int = 90,
) -> dict[str, Any]:
    """Decodes every video of `split` once at `size` (centre crop) into the cache.

    fmt "uint8": a memmapped .npy; "jpeg": each frame's view re-encoded at `jpeg_quality`.
    """
    import tensorflow_datasets as tfds

    from nsnet_jax.input_pipeline import prepared

    if fmt not in FORMATS:
        raise ValueError(f"sampler cache format {fmt!r}: use one of {', '.join(FORMATS)}")
    builder = prepared.load_builder(dataset, data_dir)
    fields = prepared.dataset_meta_fields(builder)
    source = tfds.data_source(
        dataset, split=split, data_dir=data_dir, decoders={"video": prepared.PassThrough()}
    )
    n, t = len(source), fields["num_frames"]
    data_path, index_path = cache_paths(out_dir, dataset, split, size, fmt)
    os.makedirs(os.path.dirname(data_path), exist_ok=True)
    if os.path.exists(index_path):  # readers see no cache while its files are replaced
        os.remove(index_path)
    tmp = data_path + ".partial"
    if fmt == "uint8":
        out = np.lib.format.open_memmap(tmp, "w+", np.uint8, shape=(n, t, size, size, 3))
    else:
        out, offsets = open(tmp, "wb"), np.zeros(n * t + 1, np.int64)  # noqa: SIM115 - closed below
    video_ids: list[str] = [""] * n
    labels: list[list[int]] = [[] for _ in range(n)]
    label: list[int] = [0] * n
    evidence: list[list[int]] = [[] for _ in range(n)]

    def one(i: int) -> list[bytes] | None:
        record = source[i]
        vid = record["video_id"]
        vid = vid.decode() if isinstance(vid, bytes) else str(vid)
        frames = list(record["video"])
        if len(frames) != t:
            raise ValueError(f"Example {vid!r} has {len(frames)} frames, expected {t}")
        video_ids[i] = vid
        label[i] = int(record["label"])
        labels[i] = [int(v) for v in np.asarray(record.get("labels", [label[i]])).reshape(-1)]
        ev = record.get("evidence")
        evidence[i] = [int(v) for v in np.asarray(ev if ev is not None else np.zeros(t), bool)]
        if fmt == "jpeg":
            return decode.encode_view(frames, size, jpeg_quality, example_id=vid)
        out[i] = decode.decode_frames(frames, size, example_id=vid)
        return None

    start = time.perf_counter()
    try:
        with concurrent.futures.ThreadPoolExecutor(max(1, num_threads)) as pool:
            for i, jpegs in enumerate(pool.map(one, range(n))):
                for j, jpeg in enumerate(jpegs or ()):  # in index order: offsets only grow
                    out.write(jpeg)
                    offsets[i * t + j + 1] = offsets[i * t + j] + len(jpeg)
                done = i + 1
                if done % log_every == 0 or done == n:
                    rate = done / (time.perf_counter() - start)
                    eta = (n - done) / rate
                    print(f"sampler_cache {split}: {done}/{n} videos, {rate:.1f}/s, ETA {eta:.0f}s")
    except BaseException:
        if fmt == "jpeg":
            out.close()
        out = None
        os.remove(tmp)  # a cache is written whole or not at all
        raise
    if fmt == "uint8":
        out.flush()
    else:
        out.close()
        np.save(tmp + ".offsets.npy", offsets)
    out = None  # closes the memmap before the rename
    if fmt == "jpeg":  # the index below is written last: until then the cache reads as unfinished
        os.replace(tmp + ".offsets.npy", offsets_path(data_path))
    os.replace(tmp, data_path)
    other = cache_paths(out_dir, dataset, split, size, "jpeg" if fmt == "uint8" else "uint8")[0]
    for stale in (other, offsets_path(other) if fmt == "uint8" else ""):
        if stale and os.path.exists(stale):  # the index below names one format: drop the other
            os.remove(stale)
    index = dict(
        format_version=FORMAT_VERSION,
        format=fmt,
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
        bytes=os.path.getsize(data_path),
        dataset_fingerprint=manifest.fingerprint(builder.data_dir),
        complete=True,
    )
    if fmt == "jpeg":
        index["jpeg_quality"] = jpeg_quality
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
    flags.DEFINE_enum("format", "uint8", FORMATS, "uint8 arrays or JPEG frames", flag_values=fv)
    flags.DEFINE_integer("jpeg_quality", 90, "--format=jpeg's quality", flag_values=fv)


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
        fmt=args.format,
        jpeg_quality=args.jpeg_quality,
    )
    seconds = time.perf_counter() - start
    summary = {k: v for k, v in index.items() if k not in PER_VIDEO_KEYS}
    summary.update(
        path=cache_paths(args.out_dir, args.dataset, args.split, args.size, args.format)[0],
        seconds=round(seconds, 2),
        videos_per_s=round(index["num_examples"] / seconds, 2),
        gb_per_10k_videos=round(index["bytes"] / max(1, index["num_examples"]) * 1e4 / 1e9, 2),
    )
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
