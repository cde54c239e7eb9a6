"""CPU serving paths for a trained NSNet, timed round-robin in one process (JSON lines).

    python -m nsnet_jax.bench.cpu_serving --config=configs/activitynet.py --batch=2 --repeats=3

Paths, all on the same uint8 batch and random weights: JAX jit float32 (the default, what predict
runs), JAX with the model in bfloat16, JAX one video per call, the exported TF SavedModel (jax2tf,
run by TensorFlow's XLA), the ONNX export (jax2onnx) run by ONNX Runtime (`onnxruntime`) and by
OpenVINO (`openvino`), each where its packages are installed (extras [onnx], [openvino]; the top-K
between their two graphs runs in numpy, as in predict), the reduced-precision engines (the
recognizer only): ONNX Runtime with its convolutions in int8 (`onnxruntime_int8`, calibrated on
the batch in its first, untimed call) and OpenVINO in bfloat16 (`openvino_bf16`), and the PyTorch
reference eager and with `torch.compile`, in float32 and under bfloat16 autocast (if torch is
installed). After the rounds it measures the matmul peak of each precision in the same process
(the fastest of JAX, numpy and torch on an n x n product) and gives every row its GFLOP/s (XLA's
FLOP count of one NSNet video) and MFU against the peak of the precision its recognizer runs in
(none for int8: no int8 peak is measured). XLA flags are fixed per process: `--paths=jax_f32
--torch=false --tf=false --onnx=false` with XLA_FLAGS set times one flag set
(launch/cpu_flags.sh alternates them in subprocesses).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import tempfile
import time
from typing import Any

import jax
import numpy as np
from absl import flags

from nsnet_jax import cli

_BATCH = flags.DEFINE_integer("batch", 2, "Videos per call.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Round-robin rounds.")
_TORCH = flags.DEFINE_bool("torch", True, "Include PyTorch eager and torch.compile.")
_TF = flags.DEFINE_bool("tf", True, "Include the exported TF SavedModel.")
_ONNX = flags.DEFINE_bool("onnx", True, "Include the ONNX engines that are installed.")
_PATHS = flags.DEFINE_list("paths", None, "Only these paths (default: all).")
_PEAK_DIM = flags.DEFINE_integer("peak_dim", 2048, "n of the n x n matmuls timed for the peaks.")

# The precision each path runs its recognizer (94% of NSNet's FLOPs at ActivityNet shapes) in; the
# others are float32. Its MFU is taken against the matmul peak of that precision.
_PRECISION = {"jax_bf16": "bfloat16", "openvino_bf16": "bfloat16",
              "torch_compile_bf16": "bfloat16", "onnxruntime_int8": "int8"}  # fmt: skip


def _paths(config, batch: int) -> dict:
    from nsnet_jax.bench.common import random_frames, random_variables
    from nsnet_jax.inference.jitted import make_inference_fn
    from nsnet_jax.inference.trained import TrainedModel
    from nsnet_jax.models.nsnet import build_model

    model = build_model(config)
    variables = jax.device_put(random_variables(model, config))
    lo, hi = random_frames(config, batch)
    paths = {}
    f32 = make_inference_fn(model).jitted
    paths["jax_f32"] = lambda: f32(variables, lo, hi)["logits"]
    one = [(lo[i : i + 1], hi[i : i + 1]) for i in range(batch)]
    paths["jax_f32_batch1"] = lambda: [f32(variables, a, b)["logits"] for a, b in one]
    bf_config = config.copy_and_resolve_references()
    with bf_config.unlocked():
        bf_config.model.dtype = "bfloat16"
    bf16 = make_inference_fn(build_model(bf_config)).jitted
    paths["jax_bf16"] = lambda: bf16(variables, lo, hi)["logits"]
    if _TF.value:
        import tensorflow as tf

        from nsnet_jax.inference.export import export_saved_model

        out = tempfile.mkdtemp(prefix="nsnet_tf_")
        trained = TrainedModel(config, model, variables, (), "random")
        loaded = tf.saved_model.load(export_saved_model(trained, os.path.join(out, "sm")))
        serve = loaded.signatures["serving_default"]
        lo_tf, hi_tf = tf.constant(lo), tf.constant(hi)
        paths["tf_saved_model"] = lambda: serve(sampler_frames=lo_tf, frames=hi_tf)[
            "logits"
        ].numpy()
    if _ONNX.value:
        from nsnet_jax.inference import onnx_export as ox

        trained = TrainedModel(config, model, variables, (), "random")
        rows = (("onnx", "onnxruntime"), ("openvino", "openvino"),
                (ox.INT8, "onnxruntime_int8"), (ox.BF16, "openvino_bf16"))  # fmt: skip
        for engine, row in rows:
            missing = ox.missing_packages(engine)
            if missing:
                print(json.dumps({"name": row, "skipped": f"not installed: {missing}"}), flush=True)
                continue
            out = tempfile.mkdtemp(prefix=f"nsnet_{engine}_")
            sample, recognize = ox.make_onnx_fns(trained, out, engine)
            paths[row] = lambda s=sample, r=recognize: ox.run_nsnet(s, r, lo, hi)[0]
    if _TORCH.value and importlib.util.find_spec("torch") is None:
        for row in ("torch_eager", "torch_compile", "torch_compile_bf16"):
            print(json.dumps({"name": row, "skipped": "not installed: ['torch']"}), flush=True)
    elif _TORCH.value:
        import torch

        from nsnet_jax.bench import torch_reference as tr

        tmodel = tr.build_torch_nsnet(config)
        tr.load_jax_variables(tmodel, jax.device_get(variables), config)
        tmodel.eval()
        lo_t, hi_t = torch.from_numpy(lo.copy()), torch.from_numpy(hi.copy())
        compiled = torch.compile(tmodel)

        compiled_bf16 = torch.compile(tmodel)

        def run(m, bf16=False):
            with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
                return m(lo_t, hi_t)[0].float()

        paths["torch_eager"] = lambda: run(tmodel)
        paths["torch_compile"] = lambda: run(compiled)
        paths["torch_compile_bf16"] = lambda: run(compiled_bf16, bf16=True)
    return paths


def _logits(out: Any) -> np.ndarray:
    if isinstance(out, list):  # one video per call
        return np.concatenate([_logits(o) for o in out])
    if hasattr(out, "detach"):  # torch
        out = out.detach().float().numpy()
    return np.asarray(jax.device_get(out), np.float32)


def _agreement(logits: np.ndarray, reference: np.ndarray | None) -> dict[str, Any]:
    """How far a path's logits are from JAX float32's on the same batch (random weights)."""
    if reference is None:
        return {}
    same = float((logits.argmax(-1) == reference.argmax(-1)).mean())
    diff = float(np.abs(logits - reference).max())
    return {"max_abs_logit_diff_vs_jax_f32": diff, "top1_same_as_jax_f32": same}


def _matmul_peaks(n: int, repeats: int) -> dict[str, dict[str, float]]:
    """GFLOP/s of an n x n x n product per precision and library; MFU takes the fastest."""
    from nsnet_jax.bench.common import matmul_peak
    from nsnet_jax.costs.timing import time_call

    flop = 2.0 * n**3 / 1e9
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    peaks = {
        "float32": {"jax": matmul_peak(np.float32, n, repeats)["flops_per_s"] / 1e9},
        "bfloat16": {"jax": matmul_peak(jax.numpy.bfloat16, n, repeats)["flops_per_s"] / 1e9},
    }
    no_sync = lambda out: out  # noqa: E731  (numpy and torch return finished results)
    peaks["float32"]["numpy"] = flop / time_call(lambda: a @ a, repeats, 2, no_sync)["median_s"]
    if importlib.util.find_spec("torch") is not None:
        import torch

        for precision, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
            t = torch.from_numpy(a).to(dtype)
            timing = time_call(lambda t=t: t @ t, repeats, 2, no_sync)
            peaks[precision]["torch"] = flop / timing["median_s"]
    return {p: {k: round(v, 1) for k, v in libs.items()} for p, libs in peaks.items()}


def _utilisation(name: str, videos_per_s: float, gflop_per_video: float, peaks: dict) -> dict:
    """A row's achieved GFLOP/s and its fraction of the matmul peak of its precision."""
    precision = _PRECISION.get(name, "float32")
    achieved = videos_per_s * gflop_per_video
    peak = max(peaks[precision].values()) if precision in peaks else None
    return {"precision": precision, "gflops_per_s": float(f"{achieved:.4g}"),
            "mfu": round(achieved / peak, 4) if peak else None}  # fmt: skip


def main(config: Any, workdir: str | None, argv: list[str]) -> None:
    batch = _BATCH.value
    paths = _paths(config, batch)
    if _PATHS.value:
        paths = {k: v for k, v in paths.items() if k in _PATHS.value}
    context = {"config": config.data.name, "batch": batch, "cpus": os.cpu_count(),
               "xla_flags": os.environ.get("XLA_FLAGS", ""),
               "load_avg_1m": os.getloadavg()[0], "jax": jax.__version__}  # fmt: skip
    first, outputs = {}, {}
    for name, fn in paths.items():  # compile and warm up, one after the other
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        first[name] = time.perf_counter() - t0
        outputs[name] = _logits(fn())
    rounds = {name: [] for name in paths}
    for _ in range(_REPEATS.value):
        for name, fn in paths.items():
            t0 = time.perf_counter()
            jax.block_until_ready(fn())
            rounds[name].append(time.perf_counter() - t0)
    from nsnet_jax.costs.flops import count_gmacs

    gflop_per_video = 2 * count_gmacs(config)["video_gmacs"]  # XLA: 2 FLOPs per multiply-add
    peaks = _matmul_peaks(_PEAK_DIM.value, max(_REPEATS.value, 3))
    for precision, libs in peaks.items():
        print(json.dumps({"name": f"matmul_peak_{precision}", "gflops_per_s": max(libs.values()),
                          "by_library": libs, "matmul_dim": _PEAK_DIM.value, **context}),
              flush=True)  # fmt: skip
    reference = outputs.get("jax_f32")
    for name, times in rounds.items():
        med = float(np.median(times))
        record = {"name": name, "videos_per_s": round(batch / med, 4), "median_s": round(med, 4),
                  "times_s": [round(t, 3) for t in times], "first_call_s": round(first[name], 2),
                  **_utilisation(name, batch / med, gflop_per_video, peaks),
                  "gflop_per_video": float(f"{gflop_per_video:.4g}"),
                  **_agreement(outputs[name], None if name == "jax_f32" else reference),
                  **context, "load_avg_1m_end": os.getloadavg()[0]}  # fmt: skip
        print(json.dumps(record), flush=True)
    sys.stdout.flush()


if __name__ == "__main__":
    cli.run(main)  # --config, overrides, --distributed as everywhere
