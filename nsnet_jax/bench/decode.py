"""Speed from JPEG frames, decoding included: decode-aware NSNet against decoding all T.

Also with a stored sampler view (T small JPEGs per video, `decode.encode_view`, what
`sampler_cache --format=jpeg` stores): the sampler reads those and only K frames are decoded at
full size; its rows say how often it picks the frames the decoded view picks.
"""

from __future__ import annotations

import statistics
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from nsnet_jax.bench.common import Emit
from nsnet_jax.costs.timing import rounded, time_call, time_interleaved
from nsnet_jax.input_pipeline import decode
from nsnet_jax.models.nsnet import NSNet


def load_encoded_batch(config: Any, data_dir: str, batch: int) -> tuple[list, list, list]:
    """The first eval batch of a built dataset as JPEG bytes, with its crop boxes and flips."""
    from nsnet_jax.input_pipeline.pipeline import create_dataset

    data = config.data.copy_and_resolve_references()
    with data.unlocked():
        data.data_dir = data_dir
    it, _ = create_dataset(
        data, data.eval_split, train=False, global_batch_size=batch, seed=0, views=("encoded",)
    )
    b = next(iter(it))
    videos = [list(v) for v in b["encoded_frames"]]
    boxes = [tuple(float(x) for x in box) for box in b["crop_box"]]
    return videos, boxes, [bool(f) for f in b["flip"]]


def _mean_kib(videos: list, digits: int) -> float:
    return round(float(np.mean([len(f) for v in videos for f in v])) / 1024, digits)


def bench_decode(
    model: NSNet,
    variables: Any,
    config: Any,
    jax_results: dict[str, Any],
    batch: int,
    repeats: int,
    warmup: int,
    data_dir: str,
    threads: int,
    emit: Emit,
) -> None:
    """Videos/s from JPEG frames, decode included: decode-aware NSNet vs decoding all T."""
    from nsnet_jax.inference import decode_aware as da

    d = config.data
    t, k = d.num_frames, config.model.num_select
    if data_dir:
        videos, boxes, flips = load_encoded_batch(config, data_dir, batch)
        source = f"dataset {d.name} in {data_dir}"
    else:
        videos, boxes, flips = da.synthetic_encoded_videos(batch, t), None, None
        source = "synthetic JPEG frames, 341x256, quality 90"
    stored = [decode.encode_view(v, d.sampler_size) for v in videos]
    fields = {
        "frames_source": source,
        "mean_jpeg_kib": _mean_kib(videos, 1),
        "stored_view_jpeg_kib": _mean_kib(stored, 2),
        "decode_threads": threads,
    }
    pool = ThreadPoolExecutor(threads) if threads > 1 else None
    kw = {"boxes": boxes, "flips": flips, "pool": pool}

    jitted = jax_results["jitted"]  # the functions already compiled for the pre-decoded runs
    nsnet, all_frames = jitted["nsnet"], jitted["all_t"]
    decode_aware = da.make_decode_aware_fn(
        model, d.sampler_size, d.recognizer_size, pool, sample=jitted["sample"]
    )

    def full_decode_all_t():
        frames = da.decode_batch(videos, d.recognizer_size, **kw)
        return all_frames(variables, frames)

    def full_decode_nsnet():
        lo, hi = da.decode_batch_views(videos, (d.sampler_size, d.recognizer_size), **kw)
        return nsnet(variables, lo, hi)

    splits: list[dict[str, float]] = []

    # a fresh list per call: the GPU decoder keeps recent batches by identity, and one path must
    # not find the frames another path decoded
    def aware():
        out = decode_aware(variables, list(videos), boxes, flips)
        splits.append(out["timings"])
        return out["logits"]

    def aware_stored():
        return decode_aware(variables, list(videos), boxes, flips, sampler_jpegs=stored)["logits"]

    # decode alone, per view, so a reader sees what input costs next to compute
    decode_only = {
        "decode_sampler_view_all_t": lambda: da.decode_batch(videos, d.sampler_size, **kw),
        "decode_stored_sampler_view_all_t": lambda: da.decode_batch(
            stored, d.sampler_size, flips=flips, pool=pool
        ),
        "decode_full_res_k": lambda: da.decode_batch(
            videos, d.recognizer_size, indices=np.tile(np.arange(k), (batch, 1)), **kw
        ),
        "decode_full_res_all_t": lambda: da.decode_batch(videos, d.recognizer_size, **kw),
    }
    for name, fn in decode_only.items():
        timing = time_call(fn, repeats, warmup=1, sync=lambda x: x)
        emit(f"{name}_videos_per_s", round(batch / timing["median_s"], 4), "videos/s",
             **rounded(timing), **fields)  # fmt: skip

    paths = {
        "decode_aware_nsnet": aware,
        "decode_aware_stored_view_nsnet": aware_stored,
        "full_decode_all_t": full_decode_all_t,
        "full_decode_nsnet": full_decode_nsnet,
    }
    timings, _ = time_interleaved(paths, repeats, warmup)
    medians = {name: timing["median_s"] for name, timing in timings.items()}
    for name, timing in timings.items():
        extra = {}
        if name == "decode_aware_nsnet":
            timed = splits[-repeats:]
            extra = {
                "decode_s_median": round(statistics.median(s["decode_s"] for s in timed), 4),
                "compute_s_median": round(statistics.median(s["compute_s"] for s in timed), 4),
            }
        emit(f"{name}_videos_per_s", round(batch / timing["median_s"], 4), "videos/s",
             decode_included=True, **extra, **rounded(timing), **fields)  # fmt: skip
    for base in ("full_decode_all_t", "full_decode_nsnet"):
        emit(f"speedup_decode_aware_over_{base}",
             round(medians[base] / medians["decode_aware_nsnet"], 4), "x", **fields)  # fmt: skip
    emit("speedup_stored_view_over_decode_aware",
         round(medians["decode_aware_nsnet"] / medians["decode_aware_stored_view_nsnet"], 4), "x",
         **fields)  # fmt: skip

    # same frames chosen? the pre-decoded path fed the same low-res sampler view must agree
    ref = da.decode_batch(videos, d.sampler_size, **kw)
    hi = da.decode_batch(videos, d.recognizer_size, **kw)
    want = np.asarray(nsnet(variables, ref, hi)["indices"])
    got = decode_aware(variables, videos, boxes, flips)["indices"]
    emit("decode_aware_selection_agreement", float((got == want).all(axis=1).mean()),
         "fraction of videos", **fields)  # fmt: skip
    # the stored view is a JPEG of that view: how often does the sampler still pick the same K?
    got = decode_aware(variables, videos, boxes, flips, sampler_jpegs=stored)["indices"]
    emit("stored_view_selection_agreement", float((got == want).all(axis=1).mean()),
         "fraction of videos", **fields)  # fmt: skip
    if pool is not None:
        pool.shutdown()
