"""What a stored sampler view costs a trained NSNet: top-1, frames chosen, and videos/s.

    python -m nsnet_jax.bench.stored_view --workdir=WD --cache_dir=CACHE [--split=test]
        [--data_dir=DIR] [--jpeg_quality=90] [--batch=32] [--max_videos=0] [--num_threads=N]

Runs the workdir's NSNet over a split from its JPEG frames twice, decode-aware both times: the
sampler view decoded from the full frames, and read from the stored view (`sampler_cache
--format=jpeg`, written into CACHE first when it is not there). The recognizer gets the same K
full-size frames whenever the sampler picks the same K. Prints JSON lines: top-1 of both, their
paired difference with a 95% bootstrap interval, the share of videos with the same frames and the
same top-1, and the decode-included videos/s of both paths (alternating batches, on this host).
"""

from __future__ import annotations

import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from absl import app, flags

from nsnet_jax.flag_parsing import run_tool


def define_flags(fv: flags.FlagValues) -> None:
    """This command's flags (names and defaults as documented above)."""
    flags.DEFINE_string("workdir", None, "a finished training workdir", flag_values=fv)
    flags.mark_flag_as_required("workdir", flag_values=fv)
    flags.DEFINE_string("cache_dir", None, "the JPEG sampler cache (written if missing)",
                        flag_values=fv)  # fmt: skip
    flags.mark_flag_as_required("cache_dir", flag_values=fv)
    flags.DEFINE_string("split", "test", "split to run", flag_values=fv)
    flags.DEFINE_string("data_dir", None, "TFDS data_dir (default: the workdir's)", flag_values=fv)
    flags.DEFINE_integer("jpeg_quality", 90, "the stored view's JPEG quality", flag_values=fv)
    flags.DEFINE_integer("batch", 32, "videos per call", flag_values=fv)
    flags.DEFINE_integer("max_videos", 0, "stop after this many videos (0: all)", flag_values=fv)
    flags.DEFINE_integer("num_threads", os.cpu_count() or 1, "decode threads", flag_values=fv)


def stored_view_cache(
    config: Any, split: str, cache_dir: str, quality: int, num_threads: int
) -> Any:
    """The split's JPEG sampler cache in `cache_dir` at `quality`, written first if there is none;
    checked against the dataset as it is now."""
    from nsnet_jax.input_pipeline import manifest, prepared, sampler_cache

    d = config.data
    _, index_path = sampler_cache.cache_paths(cache_dir, d.name, split, d.sampler_size)
    if not os.path.isfile(index_path):
        sampler_cache.write_cache(
            d.name, split, d.sampler_size, cache_dir, data_dir=d.data_dir or None,
            num_threads=num_threads, fmt="jpeg", jpeg_quality=quality,
        )  # fmt: skip
    cache = sampler_cache.SamplerCache(cache_dir, d.name, split, d.sampler_size)
    if cache.format != "jpeg":
        raise app.UsageError(
            f"{index_path} is a {cache.format} sampler cache, not a stored JPEG view: pass "
            "another --cache_dir (writing one here would replace it)."
        )
    if cache.index.get("jpeg_quality") != quality:
        raise app.UsageError(
            f"{index_path} was written at JPEG quality {cache.index.get('jpeg_quality')}, not "
            f"{quality}: pass --jpeg_quality={cache.index.get('jpeg_quality')} or another "
            "--cache_dir."
        )
    builder = prepared.load_builder(d.name, d.data_dir or None)
    num_examples = builder.info.splits[split].num_examples
    cache.check(num_examples, d.num_frames, manifest.fingerprint(builder.data_dir))
    return cache


def compare(
    trained: Any, split: str, cache: Any, batch: int, max_videos: int, num_threads: int
) -> dict[str, Any]:
    """Both paths over the split: per-video correctness and frames, and their timings."""
    from nsnet_jax.evaluation.intervals import paired_bootstrap
    from nsnet_jax.inference import decode_aware as da
    from nsnet_jax.input_pipeline.pipeline import create_dataset

    config, model, variables = trained.config, trained.model, trained.variables
    d = config.data
    pool = ThreadPoolExecutor(num_threads) if num_threads > 1 else None
    run = da.make_decode_aware_fn(model, d.sampler_size, d.recognizer_size, pool)
    it, meta = create_dataset(
        d, split, train=False, global_batch_size=batch, seed=0, views=("encoded",)
    )
    correct: dict[str, list[np.ndarray]] = {"decoded": [], "stored": []}
    same_frames, same_top1 = [], []
    seconds = {"decoded": 0.0, "stored": 0.0}
    done, start = 0, time.perf_counter()
    total = min(meta.num_examples, max_videos) if max_videos else meta.num_examples
    full_batch = None  # the first batch's size: a smaller last batch compiles again, untimed
    timed = 0
    for step, b in enumerate(it):
        keep = b["mask"] > 0
        if max_videos:
            keep &= np.cumsum(keep) <= max_videos - done
        videos = [list(v) for v, k in zip(b["encoded_frames"], keep, strict=True) if k]
        if not videos:
            break
        boxes = [tuple(map(float, x)) for x, k in zip(b["crop_box"], keep, strict=True) if k]
        stored = [cache.encoded(int(i)) for i in b["index"][keep]]
        for i, vid in zip(b["index"][keep], b["video_id"][keep], strict=True):
            if cache.index["video_ids"][int(i)].encode() != vid:
                raise ValueError(
                    f"{cache.index_path} holds {cache.index['video_ids'][int(i)]!r} at example "
                    f"{int(i)}, the dataset {vid.decode()!r}: the cache is stale. Pass another "
                    "--cache_dir, or delete that file to have it written again."
                )
        labels = b["label"][keep]
        first = full_batch is None
        full_batch = len(videos) if first else full_batch
        timing = not first and len(videos) == full_batch  # the first batch compiles
        outs = {}
        for name in ("decoded", "stored") if step % 2 == 0 else ("stored", "decoded"):
            # alternate which goes first; fresh lists: the GPU decoder keeps recent batches by
            # identity, and the second path must not find the frames the first one decoded
            t0 = time.perf_counter()
            jpegs = [list(x) for x in stored] if name == "stored" else None
            outs[name] = run(variables, [list(v) for v in videos], boxes, sampler_jpegs=jpegs)
            if timing:
                seconds[name] += time.perf_counter() - t0
        timed += len(videos) if timing else 0
        for name, out in outs.items():
            correct[name].append(np.asarray(out["logits"]).argmax(-1) == labels)
        same_frames.append((outs["decoded"]["indices"] == outs["stored"]["indices"]).all(-1))
        same_top1.append(
            np.asarray(outs["decoded"]["logits"]).argmax(-1)
            == np.asarray(outs["stored"]["logits"]).argmax(-1)
        )
        done += len(videos)
        rate = done / (time.perf_counter() - start)
        print(f"stored_view: {done}/{total} videos, ETA {(total - done) / rate:.0f}s",
              file=sys.stderr)  # fmt: skip
        if max_videos and done >= max_videos:
            break
    if pool is not None:
        pool.shutdown()
    hits = {name: np.concatenate(v).astype(np.float64) for name, v in correct.items()}
    mean, lo, hi = paired_bootstrap((hits["stored"] - hits["decoded"])[None])
    return dict(
        videos=done,
        top1_decoded_view=round(100 * hits["decoded"].mean(), 2),
        top1_stored_view=round(100 * hits["stored"].mean(), 2),
        top1_stored_minus_decoded=round(100 * mean, 2),
        ci95=[round(100 * lo, 2), round(100 * hi, 2)],
        same_frames=round(float(np.concatenate(same_frames).mean()), 4),
        same_top1=round(float(np.concatenate(same_top1).mean()), 4),
        videos_per_s_decoded_view=round(timed / seconds["decoded"], 2) if timed else None,
        videos_per_s_stored_view=round(timed / seconds["stored"], 2) if timed else None,
    )


def main(argv: list[str] | None = None) -> int:
    return run_tool(_main, define_flags, argv, doc=__doc__)


def _main(args: flags.FlagValues, _: list[str]) -> int:
    from nsnet_jax.inference.trained import load_trained

    trained = load_trained(args.workdir)
    if args.data_dir:
        with trained.config.unlocked():
            trained.config.data.data_dir = args.data_dir
    threads = max(1, args.num_threads)
    cache = stored_view_cache(
        trained.config, args.split, args.cache_dir, args.jpeg_quality, threads
    )
    result = compare(trained, args.split, cache, args.batch, args.max_videos, threads)
    d = trained.config.data
    print(json.dumps(dict(
        workdir=args.workdir, dataset=d.name, split=args.split, sampler_size=d.sampler_size,
        jpeg_quality=cache.index.get("jpeg_quality"), batch=args.batch,
        decode_threads=args.num_threads, **result,
    )))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
