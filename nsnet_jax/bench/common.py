"""What every benchmark shares: JSON-line output, random weights and inputs, memory, matmul peak.

Speed does not depend on weight values, so benchmarks use random ones (no checkpoint needed).
"""

from __future__ import annotations

import json
import resource
import sys
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from nsnet_jax.costs.timing import time_call
from nsnet_jax.models.layers import resolve_depthwise_impl
from nsnet_jax.models.nsnet import NSNet, init_variables, input_shapes

Emit = Callable[..., dict[str, Any]]


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
    return random_fill(shapes, seed)


def random_fill(shapes: Any, seed: int = 0) -> Any:
    """numpy values for a tree of `jax.ShapeDtypeStruct` (`jax.eval_shape` of an init), filled as
    `random_variables` describes."""
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


def synthetic_train_batch(config: Any, stage: str, batch: int, seed: int = 0) -> dict[str, Any]:
    """A random batch with every key the stage's train step reads (input_views decides frames)."""
    from nsnet_jax.train.step import input_views

    lo, hi = random_frames(config, batch, seed)
    rng = np.random.default_rng(seed + 1)
    t, c = config.data.num_frames, config.data.num_classes
    out: dict[str, Any] = {
        "labels": np.eye(c, dtype=np.float32)[rng.integers(0, c, batch)],
        "p_gt": rng.random((batch, t)).astype(np.float32),
        "correct": rng.random((batch, t)) < config.model.num_select / t,
    }
    views = input_views(config, stage)
    if "sampler" in views:
        out["sampler_frames"] = lo
    if "recognizer" in views:
        out["frames"] = hi
    return out
