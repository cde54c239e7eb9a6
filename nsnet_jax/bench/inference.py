"""NSNet inference speed against all-T and uniform-K, the measured speed-up next to the FLOP
ratio, and model FLOP utilisation."""

from __future__ import annotations

import statistics
from typing import Any

import jax
import numpy as np

from nsnet_jax.bench.common import Emit, matmul_peak, random_frames
from nsnet_jax.costs.flops import count_gmacs, xla_flops
from nsnet_jax.costs.timing import rounded, time_call, time_interleaved
from nsnet_jax.models.nsnet import DTYPES, NSNet


def bench_jax_inference(
    model: NSNet, variables: Any, config: Any, batch: int, repeats: int, warmup: int, emit: Emit
) -> dict[str, Any]:
    """NSNet vs all-T vs uniform-K on the same pre-decoded batch; speed-up, FLOP ratio, MFU."""
    from nsnet_jax.inference import (
        make_all_frames_fn,
        make_inference_fn,
        make_recognize_fn,
        uniform_indices,
    )

    device = jax.devices()[0]
    lo_np, hi_np = random_frames(config, batch)
    lo, hi = jax.device_put(lo_np, device), jax.device_put(hi_np, device)
    t, k = config.data.num_frames, config.model.num_select
    uniform = jax.device_put(uniform_indices(batch, t, k), device)

    nsnet = make_inference_fn(model).jitted
    all_frames = make_all_frames_fn(model)
    recognize = make_recognize_fn(model)
    runs = {
        "nsnet": (nsnet, (variables, lo, hi), k),
        "all_t": (all_frames, (variables, hi), t),
        "uniform_k": (recognize, (variables, hi, uniform), k),
    }
    flops = {name: xla_flops(fn, *args) for name, (fn, args, _) in runs.items()}
    calls = {name: (lambda fn=fn, args=args: fn(*args)) for name, (fn, args, _) in runs.items()}
    timings, rounds = time_interleaved(calls, repeats, warmup)
    results: dict[str, Any] = {"rounds": rounds}
    for name, (_, _, frames) in runs.items():
        timing = timings[name]
        results[name] = {"timing": timing, "flops": flops[name]}
        emit(
            f"{name}_videos_per_s",
            round(batch / timing["median_s"], 4),
            "videos/s",
            recognizer_frames_per_video=frames,
            xla_gflops_per_video=round(flops[name] / batch / 1e9, 3),
            **rounded(timing),
        )
    out = nsnet(variables, lo, hi)
    results["nsnet_indices"] = np.asarray(out["indices"])
    results["nsnet_logits"] = np.asarray(out["logits"], np.float32)
    results["frames"] = (lo_np, hi_np)

    gmacs = count_gmacs(config)
    flop_ratio = gmacs["all_frames_gmacs"] / gmacs["video_gmacs"]
    speedup = results["all_t"]["timing"]["median_s"] / results["nsnet"]["timing"]["median_s"]
    paired = statistics.median(r["all_t"] / r["nsnet"] for r in rounds)
    emit(
        "speedup_nsnet_over_all_t",
        round(speedup, 4),
        "x",
        paired_median=round(paired, 4),  # median over rounds of that round's all-T / NSNet
        flop_ratio=round(flop_ratio, 4),
        fraction_of_flop_ratio=round(speedup / flop_ratio, 4),
        video_gmacs=gmacs["video_gmacs"],
        all_frames_gmacs=gmacs["all_frames_gmacs"],
        sampler_gmacs=gmacs["sampler_gmacs"],
    )
    u_speedup = results["all_t"]["timing"]["median_s"] / results["uniform_k"]["timing"]["median_s"]
    emit(
        "speedup_uniform_k_over_all_t",
        round(u_speedup, 4),
        "x",
        flop_ratio=round(gmacs["all_frames_gmacs"] / gmacs["uniform_gmacs"], 4),
    )
    # The sampler alone: where NSNet's time goes beyond the K recognizer frames.
    from nsnet_jax.inference.decode_aware import make_sample_fn

    sample = make_sample_fn(model)
    results["jitted"] = {"nsnet": nsnet, "all_t": all_frames, "sample": sample}
    timing = time_call(lambda: sample(variables, lo), repeats, warmup)
    emit(
        "sampler_videos_per_s",
        round(batch / timing["median_s"], 4),
        "videos/s",
        share_of_nsnet_time=round(timing["median_s"] / results["nsnet"]["timing"]["median_s"], 4),
        **rounded(timing),
    )
    results["gmacs"] = gmacs
    return results


def bench_mfu(
    results: dict[str, Any], config: Any, repeats: int, peak_dim: int, emit: Emit
) -> None:
    """Achieved FLOP/s of the recognizer (all-T) and of NSNet over the measured matmul peak."""
    dtype = DTYPES[config.model.dtype]
    n = peak_dim or (2048 if jax.default_backend() == "cpu" else 8192)
    peak = matmul_peak(dtype, n, repeats)
    emit(
        "matmul_peak",
        round(peak["flops_per_s"] / 1e9, 2),
        "GFLOP/s",
        matmul_dim=n,
        best_gflops_per_s=round(peak["best_flops_per_s"] / 1e9, 2),
    )
    for name, label in (("all_t", "recognizer_all_t"), ("nsnet", "nsnet")):
        achieved = results[name]["flops"] / results[name]["timing"]["median_s"]
        emit(
            f"mfu_{label}",
            round(achieved / peak["flops_per_s"], 4),
            "fraction",
            achieved_gflops_per_s=round(achieved / 1e9, 2),
            peak_gflops_per_s=round(peak["flops_per_s"] / 1e9, 2),
            flops_source="XLA cost_analysis of the jitted function (2 FLOPs per multiply-add)",
        )
