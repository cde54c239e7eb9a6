"""The bench command, the PyTorch reference and the decode-aware path, at tiny shapes.

Timings are not asserted (they belong to `python -m nsnet_jax.bench`); what is checked: the command
prints parseable JSON lines with the expected names, PyTorch given JAX's weights picks the same
frames, and decoding only the K chosen frames picks the same frames as the pre-decoded path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from nsnet_jax.bench.common import random_variables, synthetic_train_batch
from nsnet_jax.configs import activitynet
from nsnet_jax.inference import decode_aware as da
from nsnet_jax.inference import make_inference_fn
from nsnet_jax.models.nsnet import build_model
from nsnet_jax.train.step import build_stage_optimizer, create_train_state, make_train_step
from tests.tiny import set_fields, tiny_config

ROOT = Path(__file__).resolve().parents[1]
TINY = {
    "data.recognizer_size": 32,
    "data.sampler_size": 32,
    "model.recognizer.width": 0.125,
    "model.sampler.width": 0.25,
}


def _tiny_activitynet():
    overrides = {dotted.replace(".", "__"): value for dotted, value in TINY.items()}
    return set_fields(activitynet.get_config(), **overrides)


@pytest.fixture(scope="module")
def tiny():
    config = _tiny_activitynet()
    model = build_model(config)
    return config, model, random_variables(model, config, seed=0)


def test_bench_command_prints_json_lines():
    overrides = [f"--config.{k}={v}" for k, v in TINY.items()]
    out = subprocess.run(
        [sys.executable, "-m", "nsnet_jax.bench", "--config=configs/activitynet.py", *overrides,
         "--batch=2", "--repeats=1", "--train_step=none", "--decode", "--torch",
         "--notorch_compile"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=True,
    ).stdout  # fmt: skip
    records = {}
    for line in out.strip().splitlines():
        record = json.loads(line)  # every stdout line is one JSON object
        for key in ("name", "value", "unit", "backend", "device", "dtype", "batch", "shapes"):
            assert key in record, (key, record)
        records[record["name"]] = record
    for name in (
        "nsnet_videos_per_s", "all_t_videos_per_s", "uniform_k_videos_per_s",
        "speedup_nsnet_over_all_t", "matmul_peak", "mfu_recognizer_all_t", "peak_host_memory",
        "decode_aware_nsnet_videos_per_s", "full_decode_all_t_videos_per_s",
        "full_decode_nsnet_videos_per_s", "speedup_decode_aware_over_full_decode_all_t",
        "decode_aware_stored_view_nsnet_videos_per_s", "speedup_stored_view_over_decode_aware",
        "decode_stored_sampler_view_all_t_videos_per_s",
    ):  # fmt: skip
        assert name in records, (name, sorted(records))
        assert records[name]["value"] > 0, records[name]
    assert records["speedup_nsnet_over_all_t"]["flop_ratio"] > 0
    assert records["nsnet_videos_per_s"]["shapes"]["num_select"] == 6
    assert records["decode_aware_selection_agreement"]["value"] == 1.0
    assert records["stored_view_selection_agreement"]["stored_view_jpeg_kib"] > 0
    try:
        import torch  # noqa: F401
    except ImportError:
        assert "torch_unavailable" in records
    else:
        assert records["torch_eager_nsnet_videos_per_s"]["value"] > 0
        assert records["torch_jax_selection_agreement"]["value"] == 1.0


def test_torch_reference_selects_the_same_frames_with_the_same_weights(tiny):
    torch = pytest.importorskip("torch")
    from nsnet_jax.bench import torch_reference as tr

    config, model, variables = tiny
    reference = tr.build_torch_nsnet(config)
    tr.load_jax_variables(reference, variables, config)
    rng = np.random.default_rng(3)
    lo = rng.integers(0, 256, (3, 16, 32, 32, 3), dtype=np.uint8)
    hi = rng.integers(0, 256, (3, 16, 32, 32, 3), dtype=np.uint8)
    want = make_inference_fn(model)(variables, lo, hi)
    with torch.inference_mode():
        logits, indices, scores = reference(torch.from_numpy(lo), torch.from_numpy(hi))
    assert len(np.unique(np.asarray(want["scores"]))) > 40  # scores are not all tied
    np.testing.assert_array_equal(indices.numpy(), np.asarray(want["indices"]))
    np.testing.assert_allclose(scores.numpy(), np.asarray(want["scores"]), atol=1e-5)
    np.testing.assert_allclose(logits.numpy(), np.asarray(want["logits"]), atol=1e-4, rtol=1e-4)


def _record_decodes(monkeypatch, describe) -> list:
    """Every `decode.decode_frames` call from here on, as describe(frames, size) in a list."""
    decoded, real = [], da.decode.decode_frames

    def recording(frames, size, *a, **kw):
        decoded.append(describe(frames, size))
        return real(frames, size, *a, **kw)

    monkeypatch.setattr(da.decode, "decode_frames", recording)
    return decoded


def test_decode_aware_path_selects_the_same_frames_and_decodes_only_k(tiny, monkeypatch):
    config, model, variables = tiny
    videos = da.synthetic_encoded_videos(batch=3, num_frames=16, short_side=64, seed=1)
    sizes = (config.data.sampler_size, config.data.recognizer_size)
    # the pre-decoded path: every frame decoded at both sizes, then the jitted NSNet
    lo = da.decode_batch(videos, sizes[0])
    hi = da.decode_batch(videos, sizes[1])
    want = make_inference_fn(model)(variables, lo, hi)

    decoded = _record_decodes(monkeypatch, lambda frames, size: (len(frames), size))
    got = da.make_decode_aware_fn(model, *sizes)(variables, videos)
    np.testing.assert_array_equal(got["indices"], np.asarray(want["indices"]))
    np.testing.assert_allclose(got["logits"], np.asarray(want["logits"]), atol=1e-4, rtol=1e-4)
    assert decoded == [(16, sizes[0])] * 3 + [(6, sizes[1])] * 3  # T low-res, then only K
    assert set(got["timings"]) == {"decode_s", "compute_s"}


def test_overlapped_stream_equals_batch_by_batch_and_queues_device_work_before_decoding(tiny):
    config, model, variables = tiny
    batches = [da.synthetic_encoded_videos(2, 16, short_side=48, seed=s) for s in (1, 2, 3)]
    sizes = (config.data.sampler_size, config.data.recognizer_size)
    run = da.make_decode_aware_fn(model, *sizes)
    want = [run(variables, videos) for videos in batches]

    events: list[str] = []
    real_view, real_sample = run.decoder.view, run.sample

    def view(videos, size, **kw):
        events.append(f"decode {'K' if 'indices' in kw else 'low'} {batches.index(videos)}")
        return real_view(videos, size, **kw)

    def sample(variables, low):
        events.append("sampler")
        return real_sample(variables, low)

    run.decoder.view, run.sample = view, sample
    got = list(da.run_overlapped(run, variables, iter(batches)))
    assert len(got) == 3
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g["indices"], w["indices"])
        np.testing.assert_allclose(g["logits"], w["logits"], atol=1e-5, rtol=1e-5)
        assert g["timings"]["wait_s"] >= 0
    # batch i+1's sampler is queued before batch i's K frames are decoded, and batch i+1's
    # sampler view is decoded (by the worker) before batch i's K frames are needed
    assert events.index("decode K 0") > [i for i, e in enumerate(events) if e == "sampler"][1]
    assert events.index("decode low 1") < events.index("decode K 0")
    assert events.index("decode low 2") < events.index("decode K 1")
    assert [e for e in events if e.startswith("decode K")] == ["decode K 0", "decode K 1",
                                                               "decode K 2"]  # fmt: skip


def test_gpu_checks_overlapped_row_compares_the_stream_with_decode_and_compute_alone(tiny):
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "launch" / "gpu_check.py")
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    config, model, variables = tiny
    run = da.make_decode_aware_fn(model, config.data.sampler_size, config.data.recognizer_size)
    videos = da.synthetic_encoded_videos(batch=2, num_frames=16, short_side=48, seed=4)
    chosen = np.tile(np.arange(config.model.num_select), (2, 1))
    stored = [da.decode.encode_view(v, config.data.sampler_size) for v in videos]
    for low, name in ((None, "decoded"), (stored, "stored")):
        row = gpu_check.overlapped_row(run, variables, videos, chosen, 1, 50.0, low, decoder="host")
        assert row["batches"] == 3 and row["decoder"] == "host" and row["videos_per_s"] > 0
        assert row["sampler_view"] == name
        bound = min(row["decode_only_videos_per_s"], 50.0)
        share = row["videos_per_s"] / bound
        assert row["share_of_min_decode_compute"] == pytest.approx(share, 0.02)


@pytest.mark.parametrize("stage", ["sampler", "recognizer"])
def test_bench_times_the_trainers_step_which_updates_only_its_network(stage):
    config = tiny_config(recognizer_training__warmup_steps=0)  # lr 0 at step 0 otherwise
    model = build_model(config)
    variables = random_variables(model, config, seed=0)
    tx, _ = build_stage_optimizer(config, stage, variables["params"], steps_per_epoch=10)
    state = create_train_state(variables, tx)
    step = jax.jit(make_train_step(config, model, stage, tx))
    batch = synthetic_train_batch(config, stage, batch=2)
    new, metrics = step(state, batch, jax.random.key(0))
    assert np.isfinite(float(metrics["loss"]))
    assert int(new.step) == 1
    other = "recognizer" if stage == "sampler" else "sampler"
    changed = jax.tree_util.tree_map(
        lambda x, y: bool(np.any(np.asarray(x) != np.asarray(y))),
        (new.params[stage], new.params[other]),
        (variables["params"][stage], variables["params"][other]),
    )
    assert any(jax.tree_util.tree_leaves(changed[0]))
    assert not any(jax.tree_util.tree_leaves(changed[1]))


def test_cpu_serving_command_prints_a_json_line_per_path_and_refuses_stray_arguments():
    cmd = [sys.executable, "-m", "nsnet_jax.bench.cpu_serving",
           f"--config={ROOT / 'tests' / 'tiny_train_config.py'}", "--torch=false", "--tf=false",
           "--repeats=1"]  # fmt: skip
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    names = {"jax_f32", "jax_f32_batch1", "jax_bf16", "onnxruntime", "openvino",
             "onnxruntime_int8", "openvino_bf16"}  # fmt: skip
    peaks = {r["name"]: r for r in rows if r["name"].startswith("matmul_peak_")}
    assert set(peaks) == {"matmul_peak_float32", "matmul_peak_bfloat16"}
    for peak in peaks.values():  # the fastest library's, each measured in this process
        assert peak["gflops_per_s"] == max(peak["by_library"].values()) > 0
    rows = [r for r in rows if r["name"] not in peaks]
    assert {r["name"] for r in rows} == names
    # the ONNX runtimes are in the test extra; elsewhere their rows say what is missing
    assert all(r.get("videos_per_s", 0) > 0 or "not installed" in r["skipped"] for r in rows)
    timed = {r["name"]: r for r in rows if "videos_per_s" in r}
    for r in timed.values():  # GFLOP/s from the model's FLOP count, MFU against its precision
        assert r["gflop_per_video"] > 0
        assert r["gflops_per_s"] == pytest.approx(r["videos_per_s"] * r["gflop_per_video"], 0.01)
        if r["precision"] == "int8":
            assert r["mfu"] is None
        else:
            peak = peaks[f"matmul_peak_{r['precision']}"]["gflops_per_s"]
            assert r["mfu"] == pytest.approx(r["gflops_per_s"] / peak, rel=0.01, abs=1e-4)
    assert (
        timed["jax_bf16"]["precision"] == "bfloat16" and timed["jax_f32"]["precision"] == "float32"
    )
    assert timed["jax_f32_batch1"]["top1_same_as_jax_f32"] == 1.0  # the same model and inputs
    assert "top1_same_as_jax_f32" not in timed["jax_f32"]  # the reference itself
    stray = subprocess.run(cmd + ["config.model.num_select=1"], cwd=ROOT, capture_output=True,
                           text=True, timeout=600)  # fmt: skip
    assert stray.returncode != 0 and "needs two dashes" in stray.stderr


def test_predict_speed_prints_both_modes_with_the_engine_it_ran():
    cmd = [sys.executable, "-m", "nsnet_jax.bench.predict_speed",
           f"--config={ROOT / 'tests' / 'tiny_train_config.py'}", "--videos=2", "--width=48",
           "--height=48", "--seconds=1", "--repeats=1", "--engine=jax"]  # fmt: skip
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [r["name"] for r in rows] == [
        "predict_decode_aware_videos_per_s", "predict_all_t_full_size_videos_per_s"]  # fmt: skip
    assert all(r["engine"] == "jax" and r["value"] > 0 and len(r["runs"]) == 1 for r in rows)


def test_stored_sampler_view_decodes_t_small_jpegs_then_only_k_full_frames(tiny, monkeypatch):
    config, model, variables = tiny
    videos = da.synthetic_encoded_videos(batch=3, num_frames=16, short_side=64, seed=4)
    sizes = (config.data.sampler_size, config.data.recognizer_size)
    stored = [da.decode.encode_view(v, sizes[0]) for v in videos]
    # the pre-decoded path fed the decoded stored view must choose the same frames
    lo = da.decode_batch(stored, sizes[0])
    assert np.abs(lo.astype(float) - da.decode_batch(videos, sizes[0])).mean() < 4.0
    want = make_inference_fn(model)(variables, lo, da.decode_batch(videos, sizes[1]))

    decoded = _record_decodes(
        monkeypatch, lambda frames, size: (len(frames), da.decode.image_size(frames[0])[0], size)
    )
    run = da.make_decode_aware_fn(model, *sizes)
    got = run(variables, videos, sampler_jpegs=stored)
    np.testing.assert_array_equal(got["indices"], np.asarray(want["indices"]))
    np.testing.assert_allclose(got["logits"], np.asarray(want["logits"]), atol=1e-4, rtol=1e-4)
    # T stored JPEGs (sampler-sized) per video, then K frames at full size, nothing else
    assert decoded == [(16, sizes[0], sizes[0])] * 3 + [(6, 85, sizes[1])] * 3

    streamed = list(da.run_overlapped(run, variables, [da.StoredViewBatch(videos, stored)] * 2))
    for out in streamed:
        np.testing.assert_array_equal(out["indices"], got["indices"])
    with pytest.raises(ValueError, match=f"--size={sizes[0]}"):
        run(variables, videos, sampler_jpegs=[da.decode.encode_view(v, 8) for v in videos])
    with pytest.raises(ValueError, match="other videos"):
        run(variables, videos, sampler_jpegs=[s[:4] for s in stored])
    centre = [da.decode.center_box(85, 64)] * 3  # what eval's pipeline passes: accepted
    again = run(variables, videos, boxes=centre, sampler_jpegs=stored)
    np.testing.assert_array_equal(again["indices"], got["indices"])
    with pytest.raises(ValueError, match="not the centre crop"):
        run(variables, videos, boxes=[(0.0, 0.0, 40.0, 40.0)] * 3, sampler_jpegs=stored)


def test_stored_view_command_compares_both_views_on_a_workdir_and_keeps_other_caches(
    tiny_fashion_dir, tmp_path, capsys
):
    from nsnet_jax.bench import stored_view
    from nsnet_jax.input_pipeline import sampler_cache
    from tests.helpers import tiny_predict_config, write_workdir

    workdir, cache = str(tmp_path / "wd"), str(tmp_path / "cache")
    config = tiny_predict_config(data__name="salient_fashion/tiny_test")
    write_workdir(workdir, config)
    argv = [f"--workdir={workdir}", f"--data_dir={tiny_fashion_dir}", f"--cache_dir={cache}",
            "--batch=4", "--num_threads=1"]  # fmt: skip
    assert stored_view.main(argv) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["videos"] == 13 and row["jpeg_quality"] == 90  # every test video once
    assert 0 <= row["top1_stored_view"] <= 100
    assert 0 <= row["same_frames"] <= row["same_top1"]  # same K frames: same logits
    lo, hi = row["ci95"]
    assert lo <= row["top1_stored_minus_decoded"] <= hi
    assert row["videos_per_s_stored_view"] > 0
    data, _ = sampler_cache.cache_paths(cache, config.data.name, "test", 16, "jpeg")
    written = os.path.getmtime(data)
    assert stored_view.main([*argv, "--max_videos=6"]) == 0  # reuses the cache
    assert os.path.getmtime(data) == written
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["videos"] == 6
    with pytest.raises(SystemExit):
        stored_view.main([*argv, "--jpeg_quality=95"])
    assert "--jpeg_quality=90 or another --cache_dir" in capsys.readouterr().err
    uint8 = str(tmp_path / "uint8")
    sampler_cache.write_cache(config.data.name, "test", 16, uint8, data_dir=tiny_fashion_dir)
    with pytest.raises(SystemExit):
        stored_view.main([*argv[:2], f"--cache_dir={uint8}"])
    assert "uint8 sampler cache, not a stored JPEG view" in capsys.readouterr().err
