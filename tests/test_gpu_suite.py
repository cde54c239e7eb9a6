"""`launch/gpu_suite.py --tiny`: every step runs on the CPU, reports its JSON rows, and a step that
times out is recorded while the suite goes on to the next one."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STEPS = [
    "env", "gpu_check", "stage_times", "bench_bf16", "bench_f32", "sweep_b4", "depthwise_grouped",
    "sampler_backbone_fused_mbconv", "tests",
]  # fmt: skip


def load_suite():
    spec = importlib.util.spec_from_file_location("gpu_suite", ROOT / "launch" / "gpu_suite.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "suite.jsonl").read_text().splitlines()]


def test_pytest_summary_becomes_a_row(tmp_path):
    path = tmp_path / "tests.out"
    path.write_text("....\n===== 3 passed, 1 skipped, 2 warnings in 4.01s =====\n")
    row = load_suite().pytest_row(str(path))
    assert row == [{"check": "pytest", "summary": "3 passed, 1 skipped, 2 warnings in 4.01s",
                    "passed": 3, "skipped": 1}]  # fmt: skip


@pytest.mark.slow
def test_tiny_suite_runs_every_step_and_goes_on_after_a_timeout(tmp_path):
    out = tmp_path / "suite"
    # bench_f32 gets 1 s (JAX alone takes longer to import): killed, recorded, and the sweep
    # after it still runs; the tests step runs one quick test of this file
    argv = [
        sys.executable, "launch/gpu_suite.py", "--tiny", f"--out={out}", "--timeout_bench_f32=1",
        "--tests=tests/test_gpu_suite.py::test_pytest_summary_becomes_a_row",
    ]  # fmt: skip
    res = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 1, res.stderr  # a step timed out
    lines = read(out)
    assert lines[0]["record"] == "suite" and lines[0]["steps"] == STEPS and lines[0]["tiny"]
    records = {x["step"]: x for x in lines if x.get("record") == "step"}
    assert list(records) == STEPS
    rows = {step: [x for x in lines if "record" not in x and x["step"] == step] for step in STEPS}
    for step, record in records.items():
        assert Path(record["log"]).is_file() and record["json_rows"] == len(rows[step])
        if step == "bench_f32":
            assert record["timed_out"] and record["rc"] != 0 and record["seconds"] < 30
            continue
        assert record["rc"] == 0 and not record["timed_out"], (step, res.stderr)
        assert rows[step], step
    end = lines[-1]
    assert end["record"] == "suite_end"
    assert end["timed_out"] == ["bench_f32"] and end["failed"] == [] and end["skipped"] == []
    assert "bench_f32: timed out" in res.stderr and "sweep_b4: rc=0" in res.stderr

    (env,) = rows["env"]
    assert env["check"] == "env" and env["backend"] == "cpu" and env["config_loads"] is True
    assert env["pythonpath"].split(":")[0] == str(ROOT)
    checks = {x["check"] for x in rows["gpu_check"]}
    assert {"env", "input", "compute", "e2e", "e2e_overlapped", "done"} <= checks
    assert "error" not in checks
    overlapped = [x for x in rows["gpu_check"] if x["check"] == "e2e_overlapped"]
    assert {x["sampler_view"] for x in overlapped} == {"decoded", "stored"}
    names = {x["name"] for x in rows["stage_times"]}
    assert {"inference/end_to_end", "inference/sum_of_parts"} <= names
    by_name = {}
    for x in rows["bench_bf16"]:
        by_name.setdefault(x["name"], []).append(x)
    assert by_name["speedup_nsnet_over_all_t"][0]["flop_ratio"] > 0
    assert {x["train_step"] for x in by_name["train_step_examples_per_s"]} == {
        "sampler", "recognizer",
    }  # fmt: skip
    sweep = [x for x in rows["sweep_b4"] if x["name"] == "speedup_nsnet_over_all_t"]
    assert sweep and sweep[0]["batch"] == 4 and sweep[0]["value"] > 0
    depthwise = [x for x in rows["depthwise_grouped"] if x["name"] == "sampler_videos_per_s"]
    assert depthwise[0]["depthwise_impl"] == "grouped"
    assert depthwise[0]["shapes"]["sampler"].startswith("mobilenet_v2")
    fused = [
        x for x in rows["sampler_backbone_fused_mbconv"] if x["name"] == "sampler_videos_per_s"
    ]
    assert fused[0]["shapes"]["sampler"].startswith("fused_mbconv")
    (tests,) = rows["tests"]
    assert tests["passed"] == 1 and "failed" not in tests


def test_steps_that_do_not_fit_the_budget_are_skipped_with_the_reason(tmp_path):
    argv = ["--tiny", f"--out={tmp_path}", "--steps=env,tests", "--budget_s=30"]
    assert load_suite().main(argv) == 0  # nothing ran, nothing failed
    lines = read(tmp_path)
    records = [x for x in lines if x.get("record") == "step"]
    assert [x["step"] for x in records] == ["env", "tests"]
    for x in records:
        assert x["rc"] is None and not x["timed_out"]
        assert "> 30 s left of --budget_s" in x["skipped"]
    assert lines[-1]["skipped"] == ["env", "tests"]


def test_steps_get_the_repo_and_device_site_on_pythonpath(tmp_path, monkeypatch):
    suite = load_suite()
    monkeypatch.setattr(suite, "ROOT", str(tmp_path))
    (tmp_path / ".device_site").mkdir()
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    env = suite.step_env(tiny=True)
    paths = env["PYTHONPATH"].split(":")
    assert paths == [str(tmp_path), str(tmp_path / ".device_site"), "/elsewhere"]
    assert env["JAX_PLATFORMS"] == "cpu"
    args = suite.parse_args(["--out=x", "--timeout_sweep=7", "--sweep_batches=8,16"])
    steps = {s.name: s for s in suite.build_steps(args)}
    assert list(steps) == [
        "env", "gpu_check", "stage_times", "bench_bf16", "bench_f32", "sweep_b8", "sweep_b16",
        "depthwise_shifted", "sampler_backbone_fused_mbconv", "tests",
    ]  # fmt: skip
    assert steps["sweep_b8"].timeout == steps["sweep_b16"].timeout == 7
    # two sweeps, one depthwise and one sampler backbone step fit
    assert sum(suite.TIMEOUTS.values()) + suite.TIMEOUTS["sweep"] <= 840
    assert "--config.model.dtype=bfloat16" in steps["bench_bf16"].argv
    assert "--config.model.depthwise_impl=shifted" in steps["depthwise_shifted"].argv
    fused = steps["sampler_backbone_fused_mbconv"].argv
    assert "--config.model.sampler.backbone=fused_mbconv" in fused
    assert "--config.model.dtype=bfloat16" in fused and "--train_step=none" in fused
