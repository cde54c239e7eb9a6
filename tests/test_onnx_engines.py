"""The ONNX export (jax2onnx) run by ONNX Runtime and OpenVINO chooses what JAX chooses.

Skipped where the extra is not installed (`pip install -e .[onnx,openvino]`): jax2onnx pins
orbax-checkpoint < 0.11.37, so the extras are not in the test extra (docs/serving.md).
"""

from __future__ import annotations

import numpy as np
import pytest

from nsnet_jax.inference import onnx_export, predictor
from nsnet_jax.inference.jitted import make_inference_fn
from nsnet_jax.inference.predictor import PredictOptions, predict
from nsnet_jax.inference.trained import TrainedModel, load_trained
from tests.helpers import write_frames

RUNTIMES = onnx_export.RUNTIMES


def _needs(runtime: str) -> None:
    missing = onnx_export.missing_packages(runtime)
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)} (extra [{runtime}])")


def _inputs(config, batch: int, seed: int = 0):
    d, t = config.data, config.data.num_frames
    rng = np.random.default_rng(seed)
    s = rng.integers(0, 256, (batch, t, d.sampler_size, d.sampler_size, 3), dtype=np.uint8)
    f = rng.integers(0, 256, (batch, t, d.recognizer_size, d.recognizer_size, 3), dtype=np.uint8)
    return s, f


def _video_folders(tmp_path, seed: int, n: int = 3) -> list[str]:
    """`n` frame folders of 9 random 36x48 frames, for predict."""
    rng = np.random.default_rng(seed)
    inputs = []
    for i in range(n):
        folder = str(tmp_path / f"v{i}")
        write_frames(folder, [rng.integers(0, 256, (36, 48, 3), np.uint8) for _ in range(9)])
        inputs.append(folder)
    return inputs


def _mobilenet_trained() -> TrainedModel:
    """A MobileNetV2 sampler (depthwise convolutions, ReLU6) beside the tiny ResNet recognizer,
    with perturbed weights and BatchNorm statistics; JAX runs the `shifted` depthwise form."""
    import jax

    from nsnet_jax.models.nsnet import build_model, init_variables
    from tests.helpers import tiny_predict_config

    config = tiny_predict_config(
        model__sampler__backbone="mobilenet_v2", model__sampler__width=0.35
    )
    model = build_model(config)
    variables = init_variables(model, config, jax.random.key(3))
    rng = np.random.default_rng(3)
    variables = jax.tree.map(
        lambda x: np.asarray(x) + rng.normal(0, 0.05, x.shape).astype(x.dtype), variables
    )
    return TrainedModel(config, model, variables, ("a", "b", "c", "d", "e"), "random")


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("which", ["tiny_workdir", "mobilenet_v2"])
def test_onnx_runtime_matches_jax(runtime, which, request, tmp_path):
    _needs(runtime)
    if which == "tiny_workdir":
        trained = load_trained(request.getfixturevalue("tiny_workdir"))
    else:
        trained = _mobilenet_trained()
    s, f = _inputs(trained.config, batch=3)
    ref = make_inference_fn(trained.model).jitted(trained.variables, s, f)
    sample, recognize = onnx_export.make_onnx_fns(trained, str(tmp_path), runtime)
    logits, idx, scores = onnx_export.run_nsnet(sample, recognize, s, f)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(onnx_export.FILES)
    np.testing.assert_array_equal(idx, np.asarray(ref["indices"]))
    np.testing.assert_allclose(scores, np.asarray(ref["scores"]), atol=1e-5)
    np.testing.assert_allclose(logits, np.asarray(ref["logits"]), atol=1e-4, rtol=1e-4)
    np.testing.assert_array_equal(logits.argmax(-1), np.asarray(ref["logits"]).argmax(-1))
    scores2, idx2 = sample(s[:1])  # the batch is free
    np.testing.assert_array_equal(idx2, idx[:1])


def test_host_topk_breaks_ties_like_lax_top_k():
    from nsnet_jax.models.selection import topk_indices

    scores = np.array([[0.5, 0.9, 0.5, 0.9, 0.1, 0.5], [1, 1, 1, 1, 1, 1]], np.float32)
    for k in (1, 2, 3, 5):
        np.testing.assert_array_equal(
            onnx_export.host_topk_indices(scores, k), np.asarray(topk_indices(scores, k))
        )


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_predict_engine_chooses_the_same_frames_and_top1_as_jax(runtime, tiny_workdir, tmp_path):
    _needs(runtime)
    inputs = _video_folders(tmp_path, seed=5)
    trained = load_trained(tiny_workdir)
    runs = {}
    for engine in ("jax", runtime):
        lines: list[dict] = []
        summary = predict(trained, inputs, lines.append, PredictOptions(engine=engine))
        assert summary["engine"] == engine and summary["ok"] == 3
        runs[engine] = lines
    for a, b in zip(runs["jax"], runs[runtime], strict=True):
        assert a["selected"] == b["selected"]
        np.testing.assert_allclose(a["scores"], b["scores"], atol=1e-5)
        assert a["top"][0]["index"] == b["top"][0]["index"]
        np.testing.assert_allclose(
            [c["prob"] for c in a["top"]], [c["prob"] for c in b["top"]], atol=1e-5
        )


def test_auto_prefers_the_installed_engines_in_order(monkeypatch):
    available = {"jax": True, "tf": True, "onnx": True, "openvino": True}
    monkeypatch.setattr(predictor, "engine_available", lambda e: available[e])
    monkeypatch.setattr(predictor, "cpu_vendor", lambda: "GenuineIntel")
    assert predictor.auto_engines() == ["openvino", "onnx", "tf", "jax"]  # faster on Intel CPUs
    monkeypatch.setattr(predictor, "cpu_vendor", lambda: "AuthenticAMD")
    assert predictor.auto_engines() == ["onnx", "openvino", "tf", "jax"]
    available["onnx"] = False
    assert predictor.auto_engines() == ["openvino", "tf", "jax"]
    assert predictor.choose_engine("auto") == "openvino"
    available["openvino"] = False
    assert predictor.choose_engine("auto") == "tf"
    assert predictor.choose_engine("onnx") == "onnx"
    with pytest.raises(ValueError, match="choose one of"):
        predictor.choose_engine("tensorrt")


def test_cpu_vendor_reads_cpuinfo_and_is_empty_where_it_cannot(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\n")
    assert predictor.cpu_vendor(str(info)) == "AuthenticAMD"
    info.write_text("processor\t: 0\nCPU implementer\t: 0x41\n")  # an Arm host names no vendor
    assert predictor.cpu_vendor(str(info)) == ""
    assert predictor.cpu_vendor(str(tmp_path / "missing")) == ""


def test_auto_falls_back_when_an_onnx_export_fails(tiny_workdir, tmp_path, monkeypatch, caplog):
    import logging

    def broken(*args, **kwargs):
        raise RuntimeError("no conversion rule\nfor this")

    monkeypatch.setattr(predictor, "auto_cpu_order", lambda: ("onnx",))
    monkeypatch.setattr(predictor, "engine_available", lambda e: True)
    monkeypatch.setattr(onnx_export, "make_onnx_fns", broken)
    folder = str(tmp_path / "v")
    rng = np.random.default_rng(0)
    write_frames(folder, [rng.integers(0, 256, (36, 48, 3), np.uint8) for _ in range(9)])
    lines: list[dict] = []
    with caplog.at_level(logging.WARNING, logger="nsnet_jax"):
        summary = predict(load_trained(tiny_workdir), [folder], lines.append, PredictOptions())
    assert summary["engine"] == "jax" and summary["ok"] == 1
    warned = [r.getMessage() for r in caplog.records if "instead of ONNX Runtime" in r.message]
    assert len(warned) == 1 and "no conversion rule" in warned[0]
    with pytest.raises(RuntimeError, match="no conversion rule"):
        predict(load_trained(tiny_workdir), [folder], lines.append, PredictOptions(engine="onnx"))


def test_export_writes_the_onnx_files_beside_the_saved_model(tiny_workdir, tmp_path):
    import json

    from nsnet_jax.inference.export import export_all

    runtime = next((r for r in RUNTIMES if not onnx_export.missing_packages(r)), None)
    if runtime is None:
        pytest.skip("neither ONNX extra is installed")
    trained = load_trained(tiny_workdir)
    info = export_all(trained, str(tmp_path), with_jax_export=False, with_onnx=True)
    with open(tmp_path / "signature.json") as f:
        assert json.load(f)["onnx"] == info["onnx"]
    assert sorted(p.name for p in (tmp_path / "onnx").iterdir()) == sorted(onnx_export.FILES)
    s, f = _inputs(trained.config, batch=2, seed=1)
    ref = make_inference_fn(trained.model).jitted(trained.variables, s, f)
    scores = onnx_export.load_runner(info["onnx"]["sample"], runtime)(s)
    np.testing.assert_allclose(scores, np.asarray(ref["scores"]), atol=1e-5)


def test_int8_engine_keeps_the_frames_and_quantizes_only_the_recognizer(tiny_workdir, tmp_path):
    """onnx_int8: the float32 sampler chooses JAX's frames exactly; the recognizer file it serves
    holds int8 weights, and its logits follow float32's within the quantization error."""
    import onnx

    _needs(onnx_export.INT8)
    trained = load_trained(tiny_workdir)
    s, f = _inputs(trained.config, batch=6, seed=2)
    ref = make_inference_fn(trained.model).jitted(trained.variables, s, f)
    sample, recognize = onnx_export.make_onnx_fns(trained, str(tmp_path), onnx_export.INT8)
    logits, idx, scores = onnx_export.run_nsnet(sample, recognize, s, f)
    np.testing.assert_array_equal(idx, np.asarray(ref["indices"]))
    np.testing.assert_allclose(scores, np.asarray(ref["scores"]), atol=1e-5)
    quantized = onnx.load(str(tmp_path / "recognize_int8.onnx"))
    ops = {n.op_type for n in quantized.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert any(t.data_type == onnx.TensorProto.INT8 for t in quantized.graph.initializer)
    ref_logits = np.asarray(ref["logits"])
    spread = ref_logits.max() - ref_logits.min()
    assert spread > 0
    err = np.abs(logits - ref_logits).max()
    assert 0 < err < 0.1 * spread, (err, spread)  # quantized (not float32), and close to it
    again = recognize(np.take_along_axis(f, idx[:, :, None, None, None], axis=1))
    np.testing.assert_array_equal(again, logits)  # calibrated once, on the first call


def test_int8_calibration_refuses_frames_of_the_wrong_shape(tmp_path):
    from nsnet_jax.inference.onnx_int8 import quantize_recognizer

    _needs(onnx_export.INT8)
    with pytest.raises(ValueError, match=r"expected \[N, K, H, W, 3\]"):
        quantize_recognizer("unused.onnx", str(tmp_path / "q.onnx"), np.zeros((2, 8, 8, 3)))


def test_predict_int8_engine_chooses_jax_frames(tiny_workdir, tmp_path, monkeypatch):
    from nsnet_jax.inference import onnx_int8

    _needs(onnx_export.INT8)
    inputs = _video_folders(tmp_path, seed=6)
    trained = load_trained(tiny_workdir)
    calibrated_on = []
    quantize = onnx_int8.quantize_recognizer

    def spy(fp32_path, out_path, frames):
        calibrated_on.append(np.asarray(frames).copy())
        return quantize(fp32_path, out_path, frames)

    monkeypatch.setattr(onnx_int8, "quantize_recognizer", spy)
    runs = {}
    for engine in ("jax", "onnx_int8"):
        lines: list[dict] = []
        summary = predict(trained, inputs, lines.append, PredictOptions(engine=engine))
        assert summary["engine"] == engine and summary["ok"] == 3
        assert summary["setup_s"] > 0  # export or compile and warm-up, outside videos/s
        runs[engine] = lines
    # predict's warm-up on zero frames must not be what int8 calibrates on: the videos' frames are
    assert len(calibrated_on) == 1 and calibrated_on[0].std() > 10
    for a, b in zip(runs["jax"], runs["onnx_int8"], strict=True):
        assert a["selected"] == b["selected"]
        np.testing.assert_allclose(a["scores"], b["scores"], atol=1e-5)
    with pytest.raises(ValueError, match="no early exit"):
        predictor.check_early_exit_engine("onnx_int8")


def test_bf16_engine_keeps_the_frames_and_runs_the_recognizer_in_bf16_where_the_cpu_can(
    tiny_workdir, tmp_path, caplog
):
    """openvino_bf16: the float32 sampler chooses JAX's frames exactly; the recognizer runs in
    bfloat16 on CPUs with it (logits within bf16's error), else in float32 with one warning."""
    import logging

    _needs(onnx_export.BF16)
    ov = onnx_export.import_openvino()
    has_bf16 = "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    trained = load_trained(tiny_workdir)
    s, f = _inputs(trained.config, batch=4, seed=4)
    ref = make_inference_fn(trained.model).jitted(trained.variables, s, f)
    with caplog.at_level(logging.WARNING, logger="nsnet_jax"):
        sample, recognize = onnx_export.make_onnx_fns(trained, str(tmp_path), onnx_export.BF16)
        logits, idx, scores = onnx_export.run_nsnet(sample, recognize, s, f)
    np.testing.assert_array_equal(idx, np.asarray(ref["indices"]))
    np.testing.assert_allclose(scores, np.asarray(ref["scores"]), atol=1e-5)
    ref_logits = np.asarray(ref["logits"])
    err = np.abs(logits - ref_logits).max()
    assert err < 0.05 * (ref_logits.max() - ref_logits.min()), err
    warned = any("has no bfloat16" in r.getMessage() for r in caplog.records)
    assert warned == (not has_bf16)
    if has_bf16:
        assert err > 1e-6  # bfloat16 moved them: the hint took effect


def test_int8_weights_keep_to_7_bits_only_on_x86_without_vnni(tmp_path, monkeypatch):
    import platform

    from nsnet_jax.inference.onnx_int8 import needs_reduced_range

    def cpuinfo(flags: str) -> str:
        path = tmp_path / f"cpuinfo_{len(flags)}"
        path.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
        return str(path)

    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    assert needs_reduced_range(cpuinfo("fpu sse avx2 fma"))  # AVX2 only: vpmaddubsw saturates
    assert not needs_reduced_range(cpuinfo("avx2 avx512f avx512_vnni"))
    assert not needs_reduced_range(cpuinfo("avx2 avx_vnni"))
    assert needs_reduced_range(str(tmp_path / "missing"))  # unreadable: the safe choice
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    assert not needs_reduced_range(cpuinfo("fp asimd"))
