"""Per-process, random-access video input: deterministic, resumable, sharded, padded for eval.

Design: the dataset is stored as array_record and read with `tfds.data_source` (random access).
The global example order is a pure function of (seed, position): epoch e uses permutation
`rng(seed, e)` of the split and global batch s holds positions [s*G, (s+1)*G). Process p reads
only its slice of each global batch, so processes are disjoint, the shuffle is global, and
resuming at `start_step` is exact and costs nothing (no skipped data is read or decoded).
JPEGs are decoded in a thread pool (PIL releases the GIL) a few batches ahead (prefetch).
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import functools
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from nsnet_jax.input_pipeline import decode, manifest, records
from nsnet_jax.input_pipeline.prepared import PassThrough as _PassThrough
from nsnet_jax.input_pipeline.prepared import dataset_meta_fields, load_builder


def split_name(split: str) -> str:
    """'train[1000:]' -> 'train': a TFDS slice (rows, or percent) reads part of a split."""
    return split.split("[", 1)[0].strip()


HOST_ONLY_KEYS = ("video_id", "index", "encoded_frames", "crop_box", "flip")


@dataclasses.dataclass(frozen=True)
class DatasetMeta:
    """What the model and the step counts need to know about a split."""

    num_classes: int
    class_names: tuple[str, ...]
    num_frames: int
    num_examples: int  # in this split, all processes together
    has_evidence: bool
    multi_label: bool
    steps_per_epoch: int  # train: full global batches per epoch; eval: batches of the one pass


def _cfg(data_config: Any, key: str, default: Any) -> Any:
    try:
        value = data_config[key] if isinstance(data_config, Mapping) else getattr(data_config, key)
    except (KeyError, AttributeError):
        return default
    return default if value is None else value


@functools.lru_cache(maxsize=4)
def _epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    return np.random.default_rng([seed, 0, epoch]).permutation(n)


def _train_positions(step: int, global_batch: int, local_batch: int, process_index: int):
    start = step * global_batch + process_index * local_batch
    return range(start, start + local_batch)


class _ExampleLoader:
    """Reads one record and decodes it into the two views; thread-safe, stateless per call."""

    def __init__(
        self,
        source: Any,
        *,
        num_classes: int,
        num_frames: int,
        sampler_size: int,
        recognizer_size: int,
        augment: bool,
        crop_scale_min: float,
        seed: int,
        views: Sequence[str],
        sampler_cache: Any = None,
        augment_in_step: bool = False,
        train_frames: int = 0,
    ):
        self.source = source
        self.sampler_cache = sampler_cache  # a sampler_cache.SamplerCache: no decode, no record
        self.augment_in_step = augment_in_step  # cached view: box + flip keys, step augments
        self.train_frames = train_frames  # recognizer-only training: TSN frames picked here
        self.num_classes = num_classes
        self.num_frames = num_frames
        self.sampler_size = sampler_size
        self.recognizer_size = recognizer_size
        self.augment = augment
        self.crop_scale_min = crop_scale_min
        self.seed = seed
        self.views = tuple(views)

    def __call__(self, index: int, position: int) -> dict[str, Any]:
        if self.sampler_cache is not None:
            return self._from_sampler_cache(index, position)
        record = records.read_record(self.source, int(index))
        video_id = record["video_id"]
        vid = video_id.decode() if isinstance(video_id, bytes) else str(video_id)
        frames = list(record["video"])
        if len(frames) != self.num_frames:
            raise ValueError(
                f"Example {vid!r} has {len(frames)} frames, expected {self.num_frames}"
            )
        try:
            width, height = decode.image_size(frames[0])
        except Exception as e:  # noqa: BLE001
            raise decode.CorruptFrameError(
                f"Example {vid!r}: frame 0 is not a decodable JPEG ({type(e).__name__}: {e})"
            ) from e
        flip = False
        if self.augment:
            rng = np.random.default_rng([self.seed, 1, position])
            box = decode.random_resized_box(rng, width, height, (self.crop_scale_min, 1.0))
            flip = bool(rng.random() < 0.5)
        else:
            box = decode.center_box(width, height)
        if self.train_frames and self.views == ("recognizer",):  # decode only what trains
            rng = np.random.default_rng([self.seed, 2, position])
            frames = [frames[i] for i in tsn_indices(rng, len(frames), self.train_frames)]
        # Sampler view alone: a low-res DCT decode. Both views: one decode per frame, sized for
        # the recognizer, resized twice (cheaper than two decodes).
        pairs = (("sampler_frames", "sampler"), ("frames", "recognizer"))
        keys = [k for k, v in pairs if v in self.views]
        sizes = [self.sampler_size if k == "sampler_frames" else self.recognizer_size for k in keys]
        views = (
            decode.decode_video_views(frames, sizes, box, flip=flip, example_id=vid) if keys else []
        )
        out: dict[str, Any] = dict(zip(keys, views, strict=True))
        if "encoded" in self.views:  # decode-aware path: the caller decodes only chosen frames
            out["encoded_frames"] = _object_array(frames)
            out["crop_box"] = np.asarray(box, np.float32)
            out["flip"] = np.bool_(flip)
        out.update(_label_fields(record, video_id, index, self.num_classes, self.num_frames))
        return out

    def _from_sampler_cache(self, index: int, position: int) -> dict[str, Any]:
        """The sampler view from the sampler cache (uint8, or small JPEGs): no array_record read."""
        cache = self.sampler_cache
        out: dict[str, Any] = {}
        if self.augment and self.augment_in_step:  # the jitted step crops and flips
            rng = np.random.default_rng([self.seed, 1, position])
            box, flip = cache.draw(rng, self.crop_scale_min)
            out.update(sampler_box=np.asarray(box, np.float32), sampler_flip=np.bool_(flip))
            out["sampler_frames"] = cache.video(index)
        elif self.augment:
            rng = np.random.default_rng([self.seed, 1, position])
            out["sampler_frames"] = cache.augmented(index, rng, self.crop_scale_min)
        else:
            out["sampler_frames"] = cache.video(index)
        record = cache.record(index)
        out.update(
            _label_fields(record, record["video_id"], index, self.num_classes, self.num_frames)
        )
        return out

    def padding(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if "sampler" in self.views:
            s = self.sampler_size
            out["sampler_frames"] = np.zeros((self.num_frames, s, s, 3), np.uint8)
        if "recognizer" in self.views:
            s = self.recognizer_size
            out["frames"] = np.zeros((self.num_frames, s, s, 3), np.uint8)
        if "encoded" in self.views:
            out["encoded_frames"] = _object_array([b""] * self.num_frames)
            out["crop_box"] = np.zeros(4, np.float32)
            out["flip"] = np.bool_(False)
        out.update(
            label=np.int32(0),
            labels=np.zeros(self.num_classes, np.float32),
            evidence=np.zeros(self.num_frames, bool),
            mask=np.float32(0.0),
            video_id=b"",
            index=np.int64(-1),
        )
        return out


def tsn_indices(rng: np.random.Generator, num_frames: int, n: int) -> np.ndarray:
    """One random frame from each of n equal segments of num_frames (TSN), as the recognizer
    step's `tsn_segments` picks them; all frames when n <= 0 or n >= num_frames."""
    if n <= 0 or n >= num_frames:
        return np.arange(num_frames)
    starts = np.floor(np.arange(n) * num_frames / n).astype(np.int64)
    lengths = np.floor((np.arange(n) + 1) * num_frames / n).astype(np.int64) - starts
    return starts + rng.integers(0, lengths)


def _label_fields(
    record: Mapping[str, Any], video_id: Any, index: int, num_classes: int, num_frames: int
) -> dict[str, Any]:
    """label, multi-hot labels, evidence, mask, video_id and index of one example."""
    labels = np.zeros(num_classes, np.float32)
    labels[np.asarray(record.get("labels", [record["label"]]), np.int64)] = 1.0
    labels[int(record["label"])] = 1.0
    evidence = record.get("evidence")
    return dict(
        label=np.int32(record["label"]),
        labels=labels,
        evidence=(
            np.asarray(evidence, bool) if evidence is not None else np.zeros(num_frames, bool)
        ),
        mask=np.float32(1.0),
        video_id=video_id if isinstance(video_id, bytes) else str(video_id).encode(),
        index=np.int64(index),
    )


def _object_array(items: Sequence[Any]) -> np.ndarray:
    out = np.empty(len(items), dtype=object)
    out[:] = list(items)
    return out


def _stack(examples: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    batch = {
        k: np.stack([e[k] for e in examples])
        for k in examples[0]
        if k not in ("video_id", "encoded_frames")
    }
    batch["video_id"] = _object_array([e["video_id"] for e in examples])
    if "encoded_frames" in examples[0]:
        batch["encoded_frames"] = np.stack([e["encoded_frames"] for e in examples])
    return batch


def _batches(
    loader: _ExampleLoader,
    plan: Iterator[list[tuple[int, int] | None]],
    num_threads: int,
    prefetch: int,
) -> Iterator[dict[str, np.ndarray]]:
    """Runs the plan (per batch: (index, position) or None for padding) `prefetch` batches ahead."""
    pool = concurrent.futures.ThreadPoolExecutor(max(1, num_threads), "nsnet_input")
    pending: collections.deque = collections.deque()

    def submit(items):
        return [pool.submit(loader, *item) if item is not None else None for item in items]

    try:
        for items in plan:
            pending.append(submit(items))
            if len(pending) > max(0, prefetch):
                yield _stack([f.result() if f else loader.padding() for f in pending.popleft()])
        while pending:
            yield _stack([f.result() if f else loader.padding() for f in pending.popleft()])
    finally:
        try:
            pool.shutdown(wait=False, cancel_futures=True)
        except Exception:  # noqa: BLE001 - at interpreter exit the modules may be gone already
            pass


def create_dataset(
    data_config: Any,
    split: str,
    *,
    train: bool,
    global_batch_size: int,
    seed: int,
    start_step: int = 0,
    process_index: int | None = None,
    process_count: int | None = None,
    num_epochs: int | None = None,
    views: Sequence[str] = ("sampler", "recognizer"),
    augment: bool | None = None,
) -> tuple[Iterator[dict[str, np.ndarray]], DatasetMeta]:
    """Process-local numpy batches of `split` and the split's metadata.

    Train: globally shuffled, infinite (or `num_epochs`), remainder dropped; batch `s` depends only
    on (seed, s), so `start_step` resumes exactly. Eval: one pass, every example once across all
    processes, the last batch padded with mask=0 rows. `views` picks what to produce: "sampler"
    (sampler_frames), "recognizer" (frames), "encoded" (host-only encoded_frames [b,T] JPEG
    bytes, crop_box [b,4], flip [b] for `decode.decode_frames` of only the frames a sampler
    chose: the decode-aware path). With `data.sampler_cache_dir` set and views=("sampler",), the
    sampler view comes from the `input_pipeline.sampler_cache` files instead of the full frames.
    Train with views=("recognizer",) and `data.recognizer_train_frames=n` (> 0): `frames` holds
    n TSN frames [b, n, ...] instead of T, so only those are decoded (set it to
    recognizer_training.frames_per_video; train.step.tsn_segments keeps n frames as they are).
    augment: None follows `data.augment` in training and is off in eval; True with train=False
    gives one pass over every example, each cropped and flipped as a seed decides (the sampler
    feature cache's augmented views).
    """
    if process_index is None or process_count is None:
        import jax

        process_index = jax.process_index() if process_index is None else process_index
        process_count = jax.process_count() if process_count is None else process_count
    if global_batch_size % process_count:
        raise ValueError(
            f"global_batch_size={global_batch_size} is not divisible by "
            f"process_count={process_count}"
        )
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index={process_index} not in [0, {process_count})")
    unknown = set(views) - {"sampler", "recognizer", "encoded"}
    if unknown or not views:
        raise ValueError(
            f"views must be a non-empty subset of (sampler, recognizer, encoded): {views}"
        )
    local_batch = global_batch_size // process_count
    name = _cfg(data_config, "name", "salient_fashion")
    builder = load_builder(name, _cfg(data_config, "data_dir", "") or None)
    fields = dataset_meta_fields(builder)
    for key in ("num_classes", "num_frames"):
        want = _cfg(data_config, key, None)
        if want is not None and int(want) != fields[key]:
            raise ValueError(
                f"config.data.{key}={want} but dataset {name!r} in {builder.data_dir} has "
                f"{key}={fields[key]}. Fix: set config.data.{key}={fields[key]}, or rebuild "
                f"the dataset with a builder config that has {key}={want}."
            )
    if split_name(split) not in builder.info.splits:
        raise ValueError(f"Split {split!r} not in {name!r}: {sorted(builder.info.splits)}")
    source = tfds.data_source(
        name,
        split=split,
        data_dir=_cfg(data_config, "data_dir", "") or None,
        decoders={"video": _PassThrough()},
    )
    n = len(source)
    fields["multi_label"] = fields["multi_label"] or bool(_cfg(data_config, "multi_label", False))
    if train:
        if n < global_batch_size:
            raise ValueError(f"Split {split!r} has {n} examples < global batch {global_batch_size}")
        steps_per_epoch = n // global_batch_size
    else:
        steps_per_epoch = math.ceil(n / global_batch_size)
    meta = DatasetMeta(num_examples=n, steps_per_epoch=steps_per_epoch, **fields)
    sampler_size = int(_cfg(data_config, "sampler_size", 128))
    sampler_cache = None
    cache_dir = _cfg(data_config, "sampler_cache_dir", "")
    if cache_dir and set(views) == {"sampler"}:  # other views need the JPEGs anyway
        from nsnet_jax.input_pipeline.sampler_cache import SamplerCache

        sampler_cache = SamplerCache(cache_dir, name, split, sampler_size)
        sampler_cache.check(n, meta.num_frames, manifest.fingerprint(builder.data_dir))
        where = _cfg(data_config, "sampler_cache_augment", "host")
        if where not in ("host", "step"):
            raise ValueError(f"config.data.sampler_cache_augment={where!r}: use 'host' or 'step'")
    augment_frames = train and bool(_cfg(data_config, "augment", True))
    if augment is not None:
        augment_frames = augment
    loader = _ExampleLoader(
        source,
        num_classes=meta.num_classes,
        num_frames=meta.num_frames,
        sampler_size=sampler_size,
        recognizer_size=int(_cfg(data_config, "recognizer_size", 224)),
        augment=augment_frames,
        crop_scale_min=float(_cfg(data_config, "crop_scale_min", 0.25)),
        seed=seed,
        views=views,
        sampler_cache=sampler_cache,
        augment_in_step=_cfg(data_config, "sampler_cache_augment", "host") == "step",
        train_frames=int(_cfg(data_config, "recognizer_train_frames", 0)) if train else 0,
    )
    if train:
        plan = _train_plan(
            n, seed, global_batch_size, local_batch, process_index, start_step, num_epochs
        )
    else:
        plan = _eval_plan(n, global_batch_size, local_batch, process_index, start_step)
    iterator = _batches(
        loader,
        plan,
        num_threads=int(_cfg(data_config, "num_threads", 2)),
        prefetch=int(_cfg(data_config, "prefetch", 2)),
    )
    return iterator, meta


def _train_plan(
    n: int,
    seed: int,
    global_batch: int,
    local_batch: int,
    process_index: int,
    start_step: int,
    num_epochs: int | None,
) -> Iterator[list[tuple[int, int]]]:
    total_steps = None if num_epochs is None else (num_epochs * n) // global_batch
    step = start_step
    while total_steps is None or step < total_steps:
        items = []
        for pos in _train_positions(step, global_batch, local_batch, process_index):
            epoch, offset = divmod(pos, n)
            items.append((int(_epoch_permutation(seed, epoch, n)[offset]), pos))
        yield items
        step += 1


def _eval_plan(
    n: int, global_batch: int, local_batch: int, process_index: int, start_step: int
) -> Iterator[list[tuple[int, int] | None]]:
    for step in range(start_step, math.ceil(n / global_batch)):
        yield [
            (pos, pos) if pos < n else None
            for pos in _train_positions(step, global_batch, local_batch, process_index)
        ]


def to_global(batch: Mapping[str, np.ndarray], sharding: Any) -> dict[str, Any]:
    """Numeric keys -> global jax.Arrays sharded on the batch axis; host-only keys are dropped.

    `sharding` is one Sharding for every key (e.g. NamedSharding(mesh, P('data'))) or a dict of
    them per key. Each process passes its local batch; the global batch is their concatenation.
    """
    import jax

    out = {}
    for key, value in batch.items():
        if key in HOST_ONLY_KEYS:
            continue
        s = sharding[key] if isinstance(sharding, Mapping) else sharding
        out[key] = jax.make_array_from_process_local_data(s, np.asarray(value))
    return out
