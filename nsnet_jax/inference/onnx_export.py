"""A trained NSNet as two ONNX files, served by ONNX Runtime or OpenVINO on CPU.

    sample.onnx     sampler_frames [B,T,h,w,3] uint8 -> scores [B,T] float32
    recognize.onnx  selected_frames [B,K,H,W,3] uint8 -> logits [B,C] float32

`jax2onnx` traces the model's own `NSNet.sample` and `NSNet.recognize` (parameters baked in, batch
symbolic). The top-K between them runs on the host in numpy with `lax.top_k`'s tie rule, as the
predictor's decode-aware path needs the indices there anyway. The depthwise convolutions are traced
in their `grouped` form (one grouped Conv per layer, which both runtimes run natively; the
`shifted` form that suits XLA:CPU becomes hundreds of Slice/Add nodes); both forms read the same
parameters. OpenVINO reads the ONNX file itself (its own JAX frontend fails on these functions in
OpenVINO 2026.4 with JAX 0.10).

Optional: `pip install nsnet-jax[onnx]` (jax2onnx, onnxruntime) or `nsnet-jax[openvino]`.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from nsnet_jax.inference.trained import TrainedModel
from nsnet_jax.models.nsnet import NSNet, build_model

log = logging.getLogger("nsnet_jax")

RUNTIMES = ("onnx", "openvino")  # predict's engine names: ONNX Runtime, OpenVINO (float32)
# Reduced precision, the recognizer only (the float32 sampler keeps JAX's frames; top-1 can move):
INT8 = "onnx_int8"  # ONNX Runtime, the recognizer's convolutions in int8 (inference/onnx_int8.py)
BF16 = "openvino_bf16"  # OpenVINO, the recognizer in bfloat16 (AMX / AVX512_BF16 CPUs)
REDUCED = (INT8, BF16)
_MODULES = {"onnx": "onnxruntime", "openvino": "openvino", INT8: "onnxruntime", BF16: "openvino"}
FILES = ("sample.onnx", "recognize.onnx")


def missing_packages(runtime: str) -> list[str]:
    """The packages that exporting and serving with `runtime` need and this Python lacks."""
    import importlib.util

    wanted = ["jax2onnx", _MODULES[runtime]]
    return [name for name in wanted if importlib.util.find_spec(name) is None]


def host_topk_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """`selection.topk_indices` in numpy: the K best frames in temporal order, ties to the lower."""
    order = np.argsort(-np.asarray(scores, np.float32), axis=-1, kind="stable")
    return np.sort(order[:, :k], axis=-1).astype(np.int32)


@contextlib.contextmanager
def _quiet_converter() -> Iterator[None]:
    """jax2onnx logs a warning per optional plugin whose package is absent (equinox, dm_pix)."""
    loggers = [logging.getLogger(name) for name in ("jax2onnx", "onnx_ir")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _grouped_model(trained: TrainedModel) -> NSNet:
    config = trained.config.copy_and_resolve_references()
    with config.unlocked():
        config.model.depthwise_impl = "grouped"
    return build_model(config)


def export_onnx(trained: TrainedModel, out_dir: str) -> dict[str, str]:
    """Writes `out_dir/sample.onnx` and `out_dir/recognize.onnx`; returns their paths."""
    import jax2onnx

    model = _grouped_model(trained)
    variables = jax.device_get(trained.variables)
    d, t, k = trained.config.data, trained.config.data.num_frames, trained.config.model.num_select
    (b,) = jax.export.symbolic_shape("B")

    def sample(sampler_frames):
        return model.apply(variables, sampler_frames, method=NSNet.sample)["scores"].astype(
            jnp.float32
        )

    def recognize(selected_frames):
        logits = model.apply(variables, selected_frames, method=NSNet.recognize)["logits"]
        return logits.astype(jnp.float32)

    parts = {
        "sample": (sample, (b, t, d.sampler_size, d.sampler_size, 3), "sampler_frames", "scores"),
        "recognize": (
            recognize, (b, k, d.recognizer_size, d.recognizer_size, 3), "selected_frames", "logits"
        ),
    }  # fmt: skip
    os.makedirs(out_dir, exist_ok=True)
    paths = {}
    for name, (fn, shape, input_name, output_name) in parts.items():
        with _quiet_converter():
            proto = jax2onnx.to_onnx(
                fn,
                [jax.ShapeDtypeStruct(shape, jnp.uint8)],
                model_name=f"nsnet_{name}",
                input_names=[input_name],
                output_names=[output_name],
            )
        # jax2onnx 0.17 annotates some NCHW intermediates with their NHWC shapes; ONNX Runtime
        # rejects the graph over them ("Incompatible dimensions"). The runtimes infer shapes.
        del proto.graph.value_info[:]
        paths[name] = os.path.join(out_dir, f"{name}.onnx")
        with open(paths[name], "wb") as f:
            f.write(proto.SerializeToString())
    return paths


def import_openvino() -> Any:
    """`import openvino`, without the usage event its import sends (OpenVINO 2026.4 does unless
    the user opted out or CI=true): `openvino_telemetry` forks a process to send it, which a
    process running JAX's threads should not do. Unimportable during the import, the package's
    own stub stands in."""
    import sys

    if "openvino" in sys.modules or "openvino_telemetry" in sys.modules:
        import openvino

        return openvino
    sys.modules["openvino_telemetry"] = None  # type: ignore[assignment]  # ImportError inside
    try:
        import openvino
    finally:
        if sys.modules.get("openvino_telemetry", 0) is None:
            del sys.modules["openvino_telemetry"]
    return openvino


def load_runner(path: str, runtime: str) -> Callable[[np.ndarray], np.ndarray]:
    """f(uint8 array) -> the ONNX file's one output, run by ONNX Runtime or OpenVINO on the CPU.

    OpenVINO runs float32 unless `runtime` is "openvino_bf16": left to itself it picks bfloat16
    on CPUs that have it (AMX, AVX512_BF16), which moves the logits past the float32 engines'
    1e-4 agreement with JAX."""
    if runtime == "onnx":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        input_name = session.get_inputs()[0].name

        def run_ort(x: np.ndarray) -> np.ndarray:
            return session.run(None, {input_name: x})[0]

        return run_ort
    if runtime in ("openvino", BF16):
        ov = import_openvino()
        precision = "bf16" if runtime == BF16 else "f32"
        hints = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": precision}
        compiled = ov.Core().compile_model(path, "CPU", hints)
        got = str(compiled.get_property("INFERENCE_PRECISION_HINT"))
        if runtime == BF16 and "bf" not in got:
            log.warning("openvino_bf16: this CPU has no bfloat16; OpenVINO runs %s", got)
        request = compiled.create_infer_request()

        def run_ov(x: np.ndarray) -> np.ndarray:
            return np.array(request.infer([x])[0], copy=True)  # the request reuses its buffers

        run_ov.keep_alive = compiled
        return run_ov
    raise ValueError(f"runtime={runtime!r}: choose one of {[*RUNTIMES, BF16]}")


def make_onnx_fns(
    trained: TrainedModel, directory: str, runtime: str
) -> tuple[Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]], Callable[..., np.ndarray]]:
    """(sample: sampler frames -> scores, indices) and (recognize: K frames -> logits), exported to
    `directory` and served by `runtime`: "onnx" (ONNX Runtime), "openvino" (both float32),
    "onnx_int8" (ONNX Runtime, the recognizer quantized to int8 on its first call's frames) or
    "openvino_bf16" (OpenVINO, the recognizer in bfloat16); the sampler is float32 in all."""
    if runtime not in (*RUNTIMES, *REDUCED):
        raise ValueError(f"runtime={runtime!r}: choose one of {[*RUNTIMES, *REDUCED]}")
    paths = export_onnx(trained, directory)
    float32 = {INT8: "onnx", BF16: "openvino"}.get(runtime, runtime)  # the sampler's runtime
    scores_fn = load_runner(paths["sample"], float32)
    if runtime == INT8:
        from nsnet_jax.inference.onnx_int8 import make_int8_logits_fn

        logits_fn = make_int8_logits_fn(paths["recognize"], lambda path: load_runner(path, float32))
    else:
        logits_fn = load_runner(paths["recognize"], runtime)
    k = int(trained.config.model.num_select)

    def sample(low: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        scores = scores_fn(np.ascontiguousarray(low, np.uint8))
        return scores, host_topk_indices(scores, k)

    def recognize(high: np.ndarray) -> np.ndarray:
        return logits_fn(np.ascontiguousarray(high, np.uint8))

    return sample, recognize


def run_nsnet(
    sample: Callable, recognize: Callable, sampler_frames: np.ndarray, frames: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The whole NSNet through `make_onnx_fns`' pair: (logits, indices, scores)."""
    scores, idx = sample(sampler_frames)
    selected = np.take_along_axis(frames, idx[:, :, None, None, None], axis=1)
    return recognize(selected), idx, scores


def describe(runtime: str) -> dict[str, Any]:
    """Versions, for benchmark records."""
    import importlib.metadata

    names = ["jax2onnx", _MODULES[runtime]]
    return {f"{n}_version": importlib.metadata.version(n) for n in names}
