"""The recognizer's ONNX file quantized to int8 for ONNX Runtime on the CPU (`--engine=onnx_int8`).

Why: in float32 the CPU engines run NSNet at 108-119 GFLOP/s on the 2-core AVX2 CPU, whose peak
is about 160 (docs/performance.md#cpu-serving): only less work per frame goes faster. The
recognizer is 94% of NSNet's FLOPs at ActivityNet shapes, and nearly all of them are in its
convolutions, so only those are quantized (static QDQ: int8 weights per output channel, uint8
activations with ranges calibrated on frames). Quantizing every op ONNX Runtime can (the residual
adds, the pooling, the classifier too) was slower at ActivityNet shapes and, on the tests' tiny
model, moved the logits by 75% of their spread against 4% for convolutions alone. The sampler
stays float32, so the frames chosen are exactly the float32 export's. The logits move by the
quantization error: top-1 can differ from JAX's on some videos (measured, not guaranteed), which
is why `auto` never picks this engine.

On x86 CPUs without VNNI, weights use 7 of their 8 bits (`reduce_range`): there ONNX Runtime
multiplies uint8 by int8 pairs into int16 (vpmaddubsw), which saturates with full-range weights.
With VNNI (or AMX) they use all 8: on the quickstart's recognizer, 7 bits cost 6.7 points of
top-1 (docs/performance.md).
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable

import numpy as np

log = logging.getLogger("nsnet_jax")


def needs_reduced_range(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether int8 weights should keep to 7 bits here: an x86 CPU without VNNI or AMX (or one
    whose flags cannot be read, to be safe); False elsewhere (ARM, for one, has no such issue)."""
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686"):
        return False
    try:
        with open(cpuinfo) as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return True
    return not ({"avx512_vnni", "avx_vnni", "amx_int8"} & set(flags))


def quantize_recognizer(fp32_path: str, out_path: str, calibration_frames: np.ndarray) -> str:
    """Writes `out_path`: `fp32_path` (recognize.onnx) with int8 QDQ convolutions,
    activation ranges from `calibration_frames` [N,K,H,W,3] uint8 (min-max over them)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    frames = np.ascontiguousarray(calibration_frames, np.uint8)
    if frames.ndim != 5 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(
            f"calibration frames have shape {frames.shape}: expected [N, K, H, W, 3] uint8 "
            "with N >= 1 (the selected frames of at least one video)"
        )

    class _Frames(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = [{"selected_frames": frames[i : i + 1]} for i in range(len(frames))]

        def get_next(self) -> dict | None:
            return self.batches.pop() if self.batches else None

    prepared = out_path + ".prepared.onnx"
    with warnings.catch_warnings():
        # min-max on a constant tensor divides 0 by 0 inside the quantizer; its zero point is
        # then unused (the tensor's scale makes every value 0)
        warnings.simplefilter("ignore", RuntimeWarning)
        quant_pre_process(fp32_path, prepared, skip_symbolic_shape=True)
        quantize_static(
            prepared,
            out_path,
            _Frames(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            reduce_range=needs_reduced_range(),
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["Conv"],
        )
    os.remove(prepared)
    return out_path


def make_int8_logits_fn(
    fp32_path: str, load_runner: Callable[[str], Callable[[np.ndarray], np.ndarray]]
) -> Callable[[np.ndarray], np.ndarray]:
    """f(selected frames uint8 [B,K,H,W,3]) -> logits: its first call calibrates on the frames it
    gets and quantizes `fp32_path` beside itself (recognize_int8.onnx); every call after it, the
    first included, runs the int8 file with `load_runner(path)` (onnx_export's, ONNX Runtime)."""
    state: dict[str, Callable[[np.ndarray], np.ndarray]] = {}

    def logits(frames: np.ndarray) -> np.ndarray:
        frames = np.ascontiguousarray(frames, np.uint8)
        if "run" not in state:
            out = os.path.join(os.path.dirname(fp32_path), "recognize_int8.onnx")
            quantize_recognizer(fp32_path, out, frames)
            log.info("onnx_int8: recognizer quantized, calibrated on %d videos", len(frames))
            state["run"] = load_runner(out)
        return state["run"](frames)

    return logits
