"""Inference and training speed at a config's shapes, random weights, one JSON line per measurement.

    python -m nsnet_jax.bench --config=configs/activitynet.py [--config.model.dtype=bfloat16]
        [--batch=2 --repeats=5] [--torch] [--decode [--data_dir=DIR]] [--train_step=sampler]

Measures, in one process on `jax.devices()[0]` with a fixed batch of pre-decoded frames: videos/s of
NSNet inference (sampler on T low-res frames -> top-K -> recognizer on K), of the all-T baseline
and of uniform-K (medians over `--repeats` after warm-up, `block_until_ready`); the measured
speed-up of NSNet over all-T next to its FLOP ratio (`bench.flops.count_gmacs`), which is the
limit; model FLOP utilisation (XLA's cost analysis of the jitted function / its time / a large
`jnp.dot`'s measured FLOP/s); train-step examples/s; peak host memory. `--torch` adds the same
pipeline in PyTorch (eager and `torch.compile`), `--decode` the decode-aware path from JPEG frames.
Nothing here is platform-specific except `model.depthwise_impl=auto` (see models/layers.py).
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from nsnet_jax.bench.flops import xla_flops
from nsnet_jax.bench.timing import rounded, time_call, time_interleaved
from nsnet_jax.models.layers import resolve_depthwise_impl
from nsnet_jax.models.nsnet import NSNet, build_model, init_variables, input_shapes

Emit = Callable[..., dict[str, Any]]


# ------------------------------------------------------------------------------------- helpers


def make_emitter(context: dict[str, Any], stream: Any = None) -> Emit:
    """emit(name, value, unit, **extra) prints one JSON line carrying `context` and returns it."""

    def emit(name: str, value: Any, unit: str, **extra: Any) -> dict[str, Any]:
        record = {"name": name, "value": value, "unit": unit, **context, **extra}
        print(json.dumps(record), file=stream or sys.stdout, flush=True)
        return record

    return emit


def matmul_peak(dtype: Any, n: int, repeats: int) -> dict[str, float]:
    """Measured FLOP/s of an n x n x n `jnp.dot` on the default device: MFU's denominator."""
    device = jax.devices()[0]
    key_a, key_b = jax.random.split(jax.random.key(0))
    a = jax.device_put(jax.random.normal(key_a, (n, n), jnp.float32).astype(dtype), device)
    b = jax.device_put(jax.random.normal(key_b, (n, n), jnp.float32).astype(dtype), device)
    dot = jax.jit(jnp.dot)
    t = time_call(lambda: dot(a, b), max(repeats, 3), warmup=2)
    return {"flops_per_s": 2.0 * n**3 / t["median_s"], "best_flops_per_s": 2.0 * n**3 / t["min_s"]}


def peak_host_memory_mib() -> float:
    """Peak resident set size of this process so far (ru_maxrss: KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(rss / (2**20 if sys.platform == "darwin" else 2**10), 1)


def bench_context(config: Any, batch: int) -> dict[str, Any]:
    """The fields every JSON line carries, so a script can tell runs apart."""
    d, m = config.data, config.model
    device = jax.devices()[0]
    return {
        "backend": jax.default_backend(),
        "device": device.device_kind,
        "dtype": m.dtype,
        "batch": batch,
        "shapes": {
            "num_frames": d.num_frames,
            "num_select": m.num_select,
            "sampler": f"{m.sampler.backbone}x{m.sampler.width}@{d.sampler_size}",
            "recognizer": f"{m.recognizer.backbone}x{m.recognizer.width}@{d.recognizer_size}",
            "num_classes": d.num_classes,
        },
        "depthwise_impl": resolve_depthwise_impl(m.depthwise_impl),
    }


def random_variables(model: NSNet, config: Any, seed: int = 0) -> Any:
    """Random weights without compiling `init`: shapes from `jax.eval_shape`, values from numpy.

    Jitting (or running) `init_variables` for ResNet-50 + MobileNetV2 takes about a minute on two
    CPU cores, longer than the bench itself; speed does not depend on the values. Kernels are
    N(0, 1/fan_in), biases 0, BatchNorm the identity (scale 1, mean 0, var 1).
    """
    shapes = jax.eval_shape(lambda: init_variables(model, config, jax.random.key(seed)))
    rng = np.random.default_rng(seed)
    ones = ("scale", "var")

    def fill(path: Any, leaf: jax.ShapeDtypeStruct) -> np.ndarray:
        name = str(getattr(path[-1], "key", path[-1]))
        if name == "kernel" or leaf.ndim >= 2:
            fan_in = int(np.prod(leaf.shape[:-1])) or 1
            value = rng.standard_normal(leaf.shape) / np.sqrt(fan_in)
        elif name in ones:
            value = np.ones(leaf.shape)
        else:
            value = np.zeros(leaf.shape)
        return value.astype(leaf.dtype)

    return jax.tree_util.tree_map_with_path(fill, shapes)


def random_frames(config: Any, batch: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """uint8 sampler view [B,T,h,w,3] and full-resolution view [B,T,H,W,3]."""
    lo, hi = input_shapes(config, batch)
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, lo, dtype=np.uint8), rng.integers(0, 256, hi, dtype=np.uint8)


# ------------------------------------------------------------------------------ JAX inference


def bench_jax_inference(
    model: NSNet, variables: Any, config: Any, batch: int, repeats: int, warmup: int, emit: Emit
) -> dict[str, Any]:
    """NSNet vs all-T vs uniform-K on the same pre-decoded batch; speed-up, FLOP ratio, MFU."""
    from nsnet_jax.bench.flops import count_gmacs
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
    from nsnet_jax.config_checks import DTYPES

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


# ------------------------------------------------------------------------------ training step


def make_train_step(model: NSNet, which: str) -> Callable[..., Any]:
    """A plain jitted SGD-momentum step on one sub-network, BatchNorm in training mode.

    `sampler`: frame BCE on pseudo labels + video CE on the salient head, over T low-res frames.
    `recognizer`: video CE on K full-res frames. Only that sub-network's parameters update.
    """
    import optax

    tx = optax.sgd(0.01, momentum=0.9)
    part = "sampler" if which == "sampler" else "recognizer"

    def loss_fn(sub_params, variables, frames, frame_labels, labels):
        params = {**variables["params"], part: sub_params}
        v = {"params": params, "batch_stats": variables["batch_stats"]}
        if which == "sampler":
            out, updates = model.apply(
                v, frames, train=True, method=NSNet.sample, mutable=["batch_stats"]
            )
            loss = optax.sigmoid_binary_cross_entropy(out["frame_logits"], frame_labels).mean()
            logits = out["salient_logits"]
        else:
            out, updates = model.apply(
                v, frames, train=True, method=NSNet.recognize, mutable=["batch_stats"]
            )
            loss, logits = 0.0, out["logits"]
        loss = loss + optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
        return loss, updates["batch_stats"]

    @jax.jit
    def step(variables, opt_state, frames, frame_labels, labels):
        sub = variables["params"][part]
        (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            sub, variables, frames, frame_labels, labels
        )
        updates, opt_state = tx.update(grads, opt_state, sub)
        params = {**variables["params"], part: optax.apply_updates(sub, updates)}
        return {"params": params, "batch_stats": stats}, opt_state, loss

    step.init = lambda variables: tx.init(variables["params"][part])
    return step


def bench_train_step(
    model: NSNet, variables: Any, config: Any, batch: int, repeats: int, which: str, emit: Emit
) -> None:
    """examples (videos)/s of `make_train_step(which)`; state is threaded through, like training."""
    device = jax.devices()[0]
    lo, hi = random_frames(config, batch, seed=1)
    t, k = config.data.num_frames, config.model.num_select
    frames = lo if which == "sampler" else hi[:, :k]
    rng = np.random.default_rng(2)
    frame_labels = (rng.random((batch, t)) < k / t).astype(np.float32)
    labels = rng.integers(0, config.data.num_classes, batch).astype(np.int32)
    args = [jax.device_put(a, device) for a in (frames, frame_labels, labels)]
    step = make_train_step(model, which)
    state = {"v": variables, "opt": step.init(variables)}

    def call():
        state["v"], state["opt"], loss = step(state["v"], state["opt"], *args)
        return loss

    timing = time_call(call, repeats, warmup=1)
    emit(
        "train_step_examples_per_s",
        round(batch / timing["median_s"], 4),
        "videos/s",
        train_step=which,
        frames_per_example=frames.shape[1],
        frame_size=frames.shape[2],
        optimizer="sgd momentum 0.9",
        **rounded(timing),
    )


# --------------------------------------------------------------------------------------- torch


def bench_torch(
    config: Any,
    variables: Any,
    jax_results: dict[str, Any],
    batch: int,
    repeats: int,
    warmup: int,
    compile_: bool,
    emit: Emit,
) -> None:
    """The same pipeline in PyTorch with JAX's weights: eager, then torch.compile where it works."""
    try:
        import torch

        from nsnet_jax.bench import torch_reference as tr
    except ImportError as e:
        emit("torch_unavailable", None, "", framework="torch", error=f"{type(e).__name__}: {e}")
        return
    device = "cuda" if torch.cuda.is_available() else "cpu"
    fields = {
        "framework": "torch",
        "torch_version": torch.__version__,
        "torch_device": device,
        "torch_threads": torch.get_num_threads(),
    }
    if device == "cuda":
        fields["device"] = torch.cuda.get_device_name()
    try:
        model = tr.build_torch_nsnet(config)
        tr.load_jax_variables(model, variables, config)
    except (NotImplementedError, ValueError) as e:
        emit("torch_unsupported", None, "", error=f"{type(e).__name__}: {e}", **fields)
        return
    model = model.to(device)
    lo_np, hi_np = jax_results["frames"]
    lo, hi = torch.from_numpy(lo_np.copy()).to(device), torch.from_numpy(hi_np.copy()).to(device)
    t, k = config.data.num_frames, config.model.num_select
    from nsnet_jax.inference import uniform_indices

    uniform = torch.from_numpy(uniform_indices(batch, t, k)).long().to(device)
    autocast = config.model.dtype == "bfloat16"

    def sync(x: Any) -> Any:
        if device == "cuda":
            torch.cuda.synchronize()
        return x

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args):
            with torch.inference_mode(), torch.autocast(device, torch.bfloat16, enabled=autocast):
                return fn(*args)

        return run

    pipelines = {
        "nsnet": (lambda m: m, (lo, hi)),
        "all_t": (lambda m: m.recognizer, (hi,)),
        "uniform_k": (lambda m: lambda x, i: m.recognizer(tr.gather_frames(x, i)), (hi, uniform)),
    }
    with torch.inference_mode():
        logits, indices, _ = model(lo, hi)
    agree = float((indices.cpu().numpy() == jax_results["nsnet_indices"]).all(axis=1).mean())
    emit(
        "torch_jax_selection_agreement",
        agree,
        "fraction of videos",
        max_abs_logit_diff=float(
            np.abs(logits.float().cpu().numpy() - jax_results["nsnet_logits"]).max()
        ),
        note="same weights (JAX variables copied into torch)",
        **fields,
    )
    modes = ["eager"] + (["compile"] if compile_ else [])
    for mode in modes:
        medians = {}
        for name, (select, args) in pipelines.items():
            fn = select(model)
            if mode == "compile":
                fn = torch.compile(fn)
            run = wrap(fn)
            try:
                timing = time_call(lambda run=run, args=args: run(*args), repeats, warmup, sync)
            except Exception as e:  # noqa: BLE001 - report any backend failure, keep going
                msg = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                emit(f"torch_{mode}_{name}_error", None, "", error=msg[:500], **fields)
                continue
            medians[name] = timing["median_s"]
            emit(
                f"torch_{mode}_{name}_videos_per_s",
                round(batch / timing["median_s"], 4),
                "videos/s",
                **rounded(timing),
                **fields,
            )
        if "nsnet" in medians and "all_t" in medians:
            emit(
                f"torch_{mode}_speedup_nsnet_over_all_t",
                round(medians["all_t"] / medians["nsnet"], 4),
                "x",
                **fields,
            )


# ------------------------------------------------------------------------------ decode-aware


def load_encoded_batch(config: Any, data_dir: str, batch: int) -> tuple[list, list, list]:
    """The first eval batch of a built dataset as JPEG bytes, with its crop boxes and flips."""
    from input_pipeline.pipeline import create_dataset

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
    jpeg_kib = round(float(np.mean([len(f) for v in videos for f in v])) / 1024, 1)
    fields = {"frames_source": source, "mean_jpeg_kib": jpeg_kib, "decode_threads": threads}
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

    def aware():
        out = decode_aware(variables, videos, boxes, flips)
        splits.append(out["timings"])
        return out["logits"]

    # decode alone, per view, so a reader sees what input costs next to compute
    decode_only = {
        "decode_sampler_view_all_t": lambda: da.decode_batch(videos, d.sampler_size, **kw),
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

    # same frames chosen? the pre-decoded path fed the same low-res sampler view must agree
    ref = da.decode_batch(videos, d.sampler_size, **kw)
    hi = da.decode_batch(videos, d.recognizer_size, **kw)
    want = np.asarray(nsnet(variables, ref, hi)["indices"])
    got = decode_aware(variables, videos, boxes, flips)["indices"]
    emit("decode_aware_selection_agreement", float((got == want).all(axis=1).mean()),
         "fraction of videos", **fields)  # fmt: skip
    if pool is not None:
        pool.shutdown()


# ------------------------------------------------------------------------------------------ main


def run_bench(
    config: Any,
    *,
    batch: int = 2,
    repeats: int = 5,
    warmup: int = 1,
    train_step: str = "sampler",
    use_torch: bool = False,
    torch_compile: bool = True,
    decode: bool = False,
    data_dir: str = "",
    decode_threads: int = 0,
    peak_dim: int = 0,
    seed: int = 0,
) -> None:
    """Runs every requested measurement, printing JSON lines as they finish."""
    context = bench_context(config, batch)
    emit = make_emitter(context)
    start = time.perf_counter()
    model = build_model(config)
    variables = jax.device_put(random_variables(model, config, seed), jax.devices()[0])
    emit("setup", round(time.perf_counter() - start, 2), "s", what="build + random weights",
         num_devices=jax.device_count(), jax_version=jax.__version__,
         cpu_count=os.cpu_count())  # fmt: skip

    results = bench_jax_inference(model, variables, config, batch, repeats, warmup, emit)
    bench_mfu(results, config, repeats, peak_dim, emit)
    if train_step != "none":
        bench_train_step(model, variables, config, batch, repeats, train_step, emit)
    emit("peak_host_memory_jax", peak_host_memory_mib(), "MiB", source="ru_maxrss")
    if decode:
        threads = decode_threads or os.cpu_count() or 1
        bench_decode(
            model, variables, config, results, batch, repeats, warmup, data_dir, threads, emit
        )
    if use_torch:
        bench_torch(config, variables, results, batch, repeats, warmup, torch_compile, emit)
    emit("peak_host_memory", peak_host_memory_mib(), "MiB", source="ru_maxrss, whole run")
    emit("bench_wall_time", round(time.perf_counter() - start, 1), "s")


def main(argv: list[str]) -> None:
    from absl import app, flags
    from ml_collections import config_flags

    config_flags.DEFINE_config_file("config", None, "Config file (configs/NAME.py).")
    flags.DEFINE_integer("batch", 2, "Videos per batch (fixed for every measurement).")
    flags.DEFINE_integer("repeats", 5, "Timed calls per measurement; the median is reported.")
    flags.DEFINE_integer("warmup", 1, "Untimed calls first (the first one compiles).")
    flags.DEFINE_enum("train_step", "sampler", ["sampler", "recognizer", "none"],
                      "Which sub-network's train step to time.")  # fmt: skip
    flags.DEFINE_bool("torch", False, "Also time the PyTorch pipeline (needs torch).")
    flags.DEFINE_bool("torch_compile", True, "With --torch, also try torch.compile.")
    flags.DEFINE_bool("decode", False, "Also time the decode-aware path from JPEG frames.")
    flags.DEFINE_string("data_dir", "", "With --decode: read encoded frames from this TFDS dir.")
    flags.DEFINE_integer("decode_threads", 0, "Decode threads; 0 = os.cpu_count().")
    flags.DEFINE_integer("peak_dim", 0, "Matmul size for the peak; 0 = 2048 on CPU, else 8192.")
    flags.mark_flags_as_required(["config"])

    def run(_):
        f = flags.FLAGS
        run_bench(
            f.config,
            batch=f.batch,
            repeats=f.repeats,
            warmup=f.warmup,
            train_step=f.train_step,
            use_torch=f.torch,
            torch_compile=f.torch_compile,
            decode=f.decode,
            data_dir=f.data_dir,
            decode_threads=f.decode_threads,
            peak_dim=f.peak_dim,
        )

    app.run(run, argv=argv)


if __name__ == "__main__":
    main(sys.argv)
