"""Input benchmark: videos/s per host core per view, where the time goes, cores per accelerator.

python -m nsnet_jax.bench.input_rates --dataset=salient_fashion --split=test [--data_dir=DIR]
    [--num_videos=128] [--sampler_size=128] [--recognizer_size=224] [--num_select=6]
    [--num_threads=1] [--sampler_cache_dir=DIR] [--accel_tflops=989] [--utilisation=0.3]
Prints one JSON line per measurement:
- `decode_*`: one view decoded from the stored JPEGs on one thread, split into decode (libjpeg,
  DCT-draft scale included), crop/resize and copies (PIL -> numpy -> batch slot).
- `iterator_*`: the whole `create_dataset` iterator of a stage (read, decode, augment, batch), as
  videos per second of process CPU time (`videos_per_core_s`: threads do not inflate it).
- `accelerator_*`: what one accelerator consumes at ActivityNet shapes, estimated from the GMACs of
  `python -m nsnet_jax.flops --config=configs/activitynet.py` at `--accel_tflops` x `--utilisation`,
  and the host cores that view needs to keep up.
"""

from __future__ import annotations

import io
import json
import os
import platform
import sys
import time

import numpy as np
from absl import flags
from PIL import Image

from nsnet_jax.flag_parsing import run_tool
from nsnet_jax.input_pipeline import decode, pipeline, prepared

# GMACs per video at ActivityNet shapes (T=16, K=6, MobileNetV2 @128, ResNet-50 @224), from
# `python -m nsnet_jax.flops --config=configs/activitynet.py`. Training = 3x forward (fwd + bwd).
SAMPLER_GMACS = 1.641  # all T frames
RECOGNIZER_GMACS_PER_FRAME = 3.972
ACCEL_WORK = {  # view -> (GMACs per video, what the accelerator runs on it)
    "sampler_stage": (3 * SAMPLER_GMACS, "sampler training, fwd+bwd, T=16 @128"),
    "recognizer_stage": (  # config.recognizer_training.frames_per_video = 8 TSN segments
        3 * 8 * RECOGNIZER_GMACS_PER_FRAME,
        "recognizer training, fwd+bwd, 8 TSN frames @224",
    ),
    "inference_decode_aware": (
        SAMPLER_GMACS + 6 * RECOGNIZER_GMACS_PER_FRAME,
        "NSNet inference: sampler T=16 + recognizer K=6",
    ),
    "all_T": (SAMPLER_GMACS + 16 * RECOGNIZER_GMACS_PER_FRAME, "recognizer on all T=16 @224"),
}


def _emit(**fields) -> None:
    print(json.dumps({"bench": "input", **fields}), flush=True)


def _time_views(records, fn) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) to run fn over every record."""
    start, cpu = time.perf_counter(), time.process_time()
    for rec in records:
        fn(rec)
    return time.perf_counter() - start, time.process_time() - cpu


def _profile_view(frames, size: int, boxes) -> dict[str, float]:
    """Microseconds per frame in decode (libjpeg), crop/resize and copies, as decode.py does it."""
    t_dec = t_resize = t_copy = 0.0
    out = np.empty((size, size, 3), np.uint8)
    for enc, box in zip(frames, boxes, strict=True):
        t0 = time.perf_counter()
        img = Image.open(io.BytesIO(enc))
        full_w, full_h = img.size
        box = box or decode.center_box(full_w, full_h)
        scale = decode.draft_scale(box, size)
        if scale > 1:
            img.draft("RGB", (full_w // scale, full_h // scale))
        if img.size == (full_w, full_h):
            scale = 1
        img.load()
        t1 = time.perf_counter()
        view = img.resize((size, size), Image.BILINEAR, box=tuple(v / scale for v in box))
        t2 = time.perf_counter()
        out[:] = np.asarray(view)
        t3 = time.perf_counter()
        t_dec, t_resize, t_copy = t_dec + t1 - t0, t_resize + t2 - t1, t_copy + t3 - t2
    n = max(1, len(frames))
    return {
        "decode_us": round(t_dec / n * 1e6, 1),
        "resize_us": round(t_resize / n * 1e6, 1),
        "copy_us": round(t_copy / n * 1e6, 1),
    }


def _iterate(data_config, split, views, train, batch, steps) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) for `steps` batches after a warm-up batch."""
    it, _ = pipeline.create_dataset(
        data_config,
        split,
        train=train,
        global_batch_size=batch,
        seed=0,
        process_index=0,
        process_count=1,
        views=views,
    )
    next(it)  # warm-up: fills the prefetch queue
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        next(it)
    return time.perf_counter() - wall, time.process_time() - cpu


def define_flags(fv: flags.FlagValues) -> None:
    """This command's flags (names and defaults as documented above)."""
    flags.DEFINE_string(
        "dataset", "salient_fashion", "TFDS name, e.g. video_folder/default", flag_values=fv
    )
    flags.DEFINE_string("split", "test", "split to read", flag_values=fv)
    flags.DEFINE_string("data_dir", None, "TFDS data_dir", flag_values=fv)
    flags.DEFINE_integer("num_videos", 128, "videos to measure", flag_values=fv)
    flags.DEFINE_integer("sampler_size", 128, "sampler view size", flag_values=fv)
    flags.DEFINE_integer("recognizer_size", 224, "recognizer view size", flag_values=fv)
    flags.DEFINE_integer("num_select", 6, "K frames for the recognizer", flag_values=fv)
    flags.DEFINE_integer("batch_size", 16, "videos per batch", flag_values=fv)
    flags.DEFINE_integer("num_threads", 1, "decode threads", flag_values=fv)
    flags.DEFINE_string("sampler_cache_dir", "", "adds the cached sampler stage", flag_values=fv)
    flags.DEFINE_float("accel_tflops", 989.0, "H100 SXM bf16 dense", flag_values=fv)
    flags.DEFINE_float("utilisation", 0.3, "accelerator utilisation assumed", flag_values=fv)
    flags.DEFINE_string("only", "", "comma-separated measure prefixes to run", flag_values=fv)


def main(argv: list[str] | None = None) -> int:
    return run_tool(_main, define_flags, argv, doc=__doc__)


def _main(args: flags.FlagValues, _: list[str]) -> int:

    import tensorflow_datasets as tfds

    builder = prepared.load_builder(args.dataset, args.data_dir)
    fields = prepared.dataset_meta_fields(builder)
    source = tfds.data_source(
        args.dataset,
        split=args.split,
        data_dir=args.data_dir,
        decoders={"video": prepared.PassThrough()},
    )
    n = min(args.num_videos, len(source))
    records = [list(source[i]["video"]) for i in range(n)]
    t = fields["num_frames"]
    k = min(args.num_select, t)
    chosen = np.linspace(0, t - 1, k).round().astype(int)
    width, height = decode.image_size(records[0][0])
    common = dict(
        dataset=args.dataset,
        split=args.split,
        num_videos=n,
        num_frames=t,
        machine=f"{platform.machine()} {os.cpu_count()} cpus",
        frame_size=[width, height],
    )
    only = tuple(x for x in args.only.split(",") if x)

    def wanted(name: str) -> bool:
        return not only or name.startswith(only)

    s, r = args.sampler_size, args.recognizer_size
    rng = np.random.default_rng(0)
    video_boxes = [decode.random_resized_box(rng, width, height, (0.25, 1.0)) for _ in range(n)]
    box_of = {id(rec): box for rec, box in zip(records, video_boxes, strict=True)}
    random_boxes = [box for box in video_boxes for _ in range(t)]
    runs = [
        ("decode_sampler_center", t, s, lambda rec: decode.decode_frames(rec, s), None),
        (
            "decode_sampler_random_crop",
            t,
            s,
            lambda rec: decode.decode_frames(rec, s, box_of[id(rec)]),
            random_boxes,
        ),
        (
            "decode_recognizer_k",
            k,
            r,
            lambda rec: decode.decode_frames([rec[i] for i in chosen], r),
            None,
        ),
        ("decode_recognizer_all_t", t, r, lambda rec: decode.decode_frames(rec, r), None),
    ]
    for name, frames, size, fn, boxes in runs:
        if not wanted(name):
            continue
        fn(records[0])  # warm-up
        seconds, cpu_seconds = _time_views(records, fn)
        flat = [f for rec in records for f in (rec if frames == t else [rec[i] for i in chosen])]
        profile = _profile_view(flat, size, boxes[: len(flat)] if boxes else [None] * len(flat))
        _emit(
            measure=name,
            size=size,
            frames_per_video=frames,
            threads=1,
            videos_per_s=round(n / seconds, 2),
            videos_per_core_s=round(n / cpu_seconds, 2),
            frames_per_s=round(n * frames / seconds, 1),
            us_per_frame=profile,
            **common,
        )
    base = dict(
        name=args.dataset,
        data_dir=args.data_dir or "",
        sampler_size=s,
        recognizer_size=r,
        augment=True,
        crop_scale_min=0.25,
        num_threads=args.num_threads,
        prefetch=2,
    )
    stages = [
        ("iterator_sampler_stage", ("sampler",), True, {}),
        ("iterator_recognizer_stage", ("recognizer",), True, {}),
        ("iterator_recognizer_stage_tsn", ("recognizer",), True, {"recognizer_train_frames": 8}),
        ("iterator_inference_decode_aware", ("encoded",), False, {}),
        ("iterator_all_T", ("sampler", "recognizer"), False, {}),
    ]
    if args.sampler_cache_dir:
        cache = {"sampler_cache_dir": args.sampler_cache_dir}
        stages.insert(1, ("iterator_sampler_stage_cached", ("sampler",), True, cache))
        step = dict(cache, sampler_cache_augment="step")
        stages.insert(2, ("iterator_sampler_stage_cached_step", ("sampler",), True, step))
    per_core: dict[str, float] = {}
    for name, views, train, extra in stages:
        if not wanted(name):
            continue
        steps = max(4, n // args.batch_size)
        if not train:  # one pass over the split: leave the warm-up batch out
            steps = max(1, min(steps, -(-len(source) // args.batch_size) - 1))
        videos = steps * args.batch_size
        if "encoded" not in views:
            config = {**base, **extra}
            wall, cpu = _iterate(config, args.split, views, train, args.batch_size, steps)
        else:  # the decode-aware consumer: T low-res + K full-res per video
            it, _ = pipeline.create_dataset(
                base,
                args.split,
                train=False,
                global_batch_size=args.batch_size,
                seed=0,
                process_index=0,
                process_count=1,
                views=views,
            )
            next(it)  # warm-up
            start_w, start_c = time.perf_counter(), time.process_time()
            for _ in range(steps):
                batch = next(it)
                for b, enc in enumerate(batch["encoded_frames"]):
                    box = tuple(float(v) for v in batch["crop_box"][b])
                    decode.decode_frames(list(enc), s, box)
                    decode.decode_frames([enc[i] for i in chosen], r, box)
            wall, cpu = time.perf_counter() - start_w, time.process_time() - start_c
        per_core[name] = videos / cpu
        _emit(
            measure=name,
            views=list(views),
            train=train,
            augment=(
                ("in the jitted step (not counted)" if "sampler_cache_augment" in extra else "host")
                if train and extra.get("augment", True)
                else "none"
            ),
            threads=args.num_threads,
            videos_per_s=round(videos / wall, 2),
            videos_per_core_s=round(videos / cpu, 2),
            **{k2: v for k2, v in extra.items() if k2 not in ("augment", "sampler_cache_augment")},
            **common,
        )
    macs_per_s = args.accel_tflops * 1e12 * args.utilisation / 2
    feeds = {
        "sampler_stage": "iterator_sampler_stage",
        "sampler_stage_cached": "iterator_sampler_stage_cached",
        "sampler_stage_cached_step": "iterator_sampler_stage_cached_step",
        "recognizer_stage": "iterator_recognizer_stage",
        "recognizer_stage_tsn": "iterator_recognizer_stage_tsn",
        "inference_decode_aware": "iterator_inference_decode_aware",
        "all_T": "iterator_all_T",
    }
    for view, measured in feeds.items():
        if measured not in per_core:
            continue
        base_view = view.replace("_cached", "").replace("_step", "").replace("_tsn", "")
        gmacs, what = ACCEL_WORK[base_view]
        demand = macs_per_s / (gmacs * 1e9)
        _emit(
            measure="accelerator_" + view,
            work=what,
            gmacs_per_video=round(gmacs, 2),
            accel_tflops=args.accel_tflops,
            utilisation=args.utilisation,
            accel_videos_per_s=round(demand, 1),
            host_videos_per_core_s=round(per_core[measured], 2),
            host_cores_per_accelerator=round(demand / per_core[measured], 1),
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
