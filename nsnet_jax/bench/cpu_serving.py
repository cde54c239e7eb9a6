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
installed). XLA flags are fixed per process: `--paths=jax_f32 --torch=false --tf=false
--onnx=false` with XLA_FLAGS set times one flag set (launch/cpu_flags.sh alternates them in
subprocesses).
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
    reference = outputs.get("jax_f32")
    for name, times in rounds.items():
        med = float(np.median(times))
        record = {"name": name, "videos_per_s": round(batch / med, 4), "median_s": round(med, 4),
                  "times_s": [round(t, 3) for t in times], "first_call_s": round(first[name], 2),
                  **_agreement(outputs[name], None if name == "jax_f32" else reference),
                  **context, "load_avg_1m_end": os.getloadavg()[0]}  # fmt: skip
        print(json.dumps(record), flush=True)
    sys.stdout.flush()


if __name__ == "__main__":
    cli.run(main)  # --config, overrides, --distributed as everywhere
