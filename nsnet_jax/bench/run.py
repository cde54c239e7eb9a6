"""Inference and training speed at a config's shapes, random weights, one JSON line per measurement.

    python -m nsnet_jax.bench --config=configs/activitynet.py [--config.model.dtype=bfloat16]
        [--batch=2 --repeats=5] [--torch] [--decode [--data_dir=DIR]] [--train_step=sampler]

Measures, in one process on `jax.devices()[0]` with a fixed batch of pre-decoded frames: videos/s of
NSNet inference (sampler on T low-res frames -> top-K -> recognizer on K), of the all-T baseline
and of uniform-K (medians over `--repeats` after warm-up, `block_until_ready`); the measured
speed-up of NSNet over all-T next to its FLOP ratio (`costs.flops.count_gmacs`), which is the
limit; model FLOP utilisation (XLA's cost analysis of the jitted function / its time / a large
`jnp.dot`'s measured FLOP/s); train-step examples/s; peak host memory. `--torch` adds the same
pipeline in PyTorch (eager and `torch.compile`), `--decode` the decode-aware path from JPEG frames.
Nothing here is platform-specific except `model.depthwise_impl=auto` (see models/layers.py).
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import jax

from nsnet_jax.bench.common import (
    bench_context,
    make_emitter,
    peak_host_memory_mib,
    random_variables,
)
from nsnet_jax.bench.decode import bench_decode
from nsnet_jax.bench.inference import bench_jax_inference, bench_mfu
from nsnet_jax.bench.pytorch import bench_torch
from nsnet_jax.bench.train import bench_train_step
from nsnet_jax.models.nsnet import build_model


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
    for stage in {"both": ("sampler", "recognizer"), "none": ()}.get(train_step, (train_step,)):
        bench_train_step(model, variables, config, batch, repeats, stage, emit)
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
    from absl import flags

    from nsnet_jax import cli

    def define_flags() -> None:
        flags.DEFINE_integer("batch", 2, "Videos per batch (fixed for every measurement).")
        flags.DEFINE_integer("repeats", 5, "Timed calls per measurement; the median is reported.")
        flags.DEFINE_integer("warmup", 1, "Untimed calls first (the first one compiles).")
        flags.DEFINE_enum("train_step", "sampler", ["sampler", "recognizer", "both", "none"],
                          "Which sub-network's train step to time.")  # fmt: skip
        flags.DEFINE_bool("torch", False, "Also time the PyTorch pipeline (needs torch).")
        flags.DEFINE_bool("torch_compile", True, "With --torch, also try torch.compile.")
        flags.DEFINE_bool("decode", False, "Also time the decode-aware path from JPEG frames.")
        flags.DEFINE_string(
            "data_dir", "", "With --decode: read encoded frames from this TFDS dir."
        )
        flags.DEFINE_integer("decode_threads", 0, "Decode threads; 0 = os.cpu_count().")
        flags.DEFINE_integer("peak_dim", 0, "Matmul size for the peak; 0 = 2048 on CPU, else 8192.")

    def run(config, workdir, args):
        f = flags.FLAGS
        run_bench(
            config,
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

    cli.run(run, define_extra=define_flags, argv=argv)


if __name__ == "__main__":
    main(sys.argv)
