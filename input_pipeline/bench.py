"""Input benchmark: decoded videos/s per view, so a reader sees whether input bounds training.

python -m input_pipeline.bench --dataset=salient_fashion --split=test [--data_dir=DIR]
    [--num_videos=128] [--sampler_size=128] [--recognizer_size=224] [--num_select=6]
Prints one JSON line per measurement: the sampler view (all T frames, low-res DCT decode), the
recognizer view (K frames at full res: the decode-aware path; and all T), and the whole
`create_dataset` iterator (both views, the thread pool, prefetch).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

from input_pipeline import decode, pipeline


def _emit(**fields) -> None:
    print(json.dumps({"bench": "input", **fields}), flush=True)


def _time_views(records, fn) -> float:
    start = time.perf_counter()
    for rec in records:
        fn(rec)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="salient_fashion")
    p.add_argument("--split", default="test")
    p.add_argument("--data_dir", default=None)
    p.add_argument("--num_videos", type=int, default=128)
    p.add_argument("--sampler_size", type=int, default=128)
    p.add_argument("--recognizer_size", type=int, default=224)
    p.add_argument("--num_select", type=int, default=6)
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--num_threads", type=int, default=os.cpu_count() or 1)
    args = p.parse_args(argv)

    import tensorflow_datasets as tfds

    builder = pipeline.load_builder(args.dataset, args.data_dir)
    fields = pipeline.dataset_meta_fields(builder)
    source = tfds.data_source(
        args.dataset,
        split=args.split,
        data_dir=args.data_dir,
        decoders={"video": pipeline._PassThrough()},
    )
    n = min(args.num_videos, len(source))
    records = [list(source[i]["video"]) for i in range(n)]
    t = fields["num_frames"]
    k = min(args.num_select, t)
    chosen = np.linspace(0, t - 1, k).round().astype(int)
    common = dict(
        dataset=args.dataset,
        split=args.split,
        num_videos=n,
        num_frames=t,
        machine=f"{platform.machine()} {os.cpu_count()} cpus",
        frame_size=list(decode.image_size(records[0][0])),
    )
    s, r = args.sampler_size, args.recognizer_size
    runs = [
        ("sampler_view", t, s, lambda rec: decode.decode_frames(rec, s)),
        ("sampler_view_nodraft", t, s, lambda rec: decode.decode_frames(rec, s, draft=False)),
        ("recognizer_view_k", k, r, lambda rec: decode.decode_frames([rec[i] for i in chosen], r)),
        ("recognizer_view_all", t, r, lambda rec: decode.decode_frames(rec, r)),
    ]
    for name, frames, size, fn in runs:
        fn(records[0])  # warm-up
        seconds = _time_views(records, fn)
        _emit(
            measure=name,
            size=size,
            frames_per_video=frames,
            threads=1,
            videos_per_s=round(n / seconds, 2),
            frames_per_s=round(n * frames / seconds, 1),
            **common,
        )
    data_config = dict(
        name=args.dataset,
        data_dir=args.data_dir or "",
        sampler_size=s,
        recognizer_size=r,
        augment=True,
        crop_scale_min=0.25,
        num_threads=args.num_threads,
        prefetch=2,
    )
    for views in (("sampler",), ("sampler", "recognizer")):
        it, _ = pipeline.create_dataset(
            data_config,
            args.split,
            train=True,
            global_batch_size=args.batch_size,
            seed=0,
            process_index=0,
            process_count=1,
            views=views,
        )
        next(it)  # warm-up: fills the prefetch queue
        steps = max(8, n // args.batch_size)
        start = time.perf_counter()
        for _ in range(steps):
            next(it)
        seconds = time.perf_counter() - start
        _emit(
            measure="create_dataset_" + "+".join(views),
            size=[s, r] if len(views) == 2 else s,
            threads=args.num_threads,
            augment="random resized crop + flip",
            videos_per_s=round(steps * args.batch_size / seconds, 2),
            **common,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
