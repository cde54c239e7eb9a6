"""Evaluation with early exit on: its rows beside fixed-K, the budget, the speed command."""

import json
import os

import jax
import pytest

from nsnet_jax import compare
from nsnet_jax.bench import early_exit_speed
from nsnet_jax.evaluation import early_exit_report, evaluate
from nsnet_jax.models.nsnet import build_model
from nsnet_jax.sharding import data_mesh
from tests import tiny_train_config
from tests.helpers import TINY, write_workdir
from tests.tiny import set_fields


def test_evaluation_reports_early_exit_beside_fixed_k(tiny_fashion_dir, tmp_path):
    config = set_fields(
        tiny_train_config.get_config(), data__data_dir=tiny_fashion_dir,
        eval__early_exit_thresholds="0,0.5,1", eval__early_exit_budget_gmacs=1e-3,
        eval__early_exit_holdout=10, eval__scsampler_videos=16, eval__mgsampler=True,
    )  # fmt: skip
    write_workdir(str(tmp_path), config)
    from nsnet_jax.train import checkpointing

    variables = checkpointing.restore_variables(os.path.join(tmp_path, "sampler", "final"))
    results = evaluate.evaluate(config, build_model(config), variables, data_mesh())
    section = results["early_exit"]
    assert section["k_max"] == 2 and section["rule"] == "margin"
    rows = {r["threshold"]: r for r in section["rows"]}
    fixed = {r["k"]: r for r in results["rows"] if r["method"] == "nsnet"}
    assert rows[0.0]["top1"] == fixed[1]["top1"] and rows[0.0]["mean_frames"] == 1.0
    assert rows[1.0]["top1"] == fixed[2]["top1"] and rows[1.0]["mean_frames"] == 2.0
    assert rows[1.0]["gmacs"] == pytest.approx(fixed[2]["gmacs"], rel=1e-12)
    assert rows[0.0]["evidence_recall"] == fixed[1]["evidence_recall"]
    assert section["budget_threshold"] is not None
    assert len(section["per_video"]["correct"]) == TINY["num_test"] == results["num_videos"]
    mg = {r["k"]: r for r in results["rows"] if r["method"] == "mgsampler"}
    uniform = {r["k"]: r for r in results["rows"] if r["method"] == "uniform"}
    assert mg[2]["gmacs"] > uniform[2]["gmacs"]
    sc = {r["k"]: r for r in results["rows"] if r["method"] == "scsampler"}
    assert sc[2]["gmacs"] == fixed[2]["gmacs"] and 0 <= sc[2]["top1"] <= 1
    assert "Early exit (margin, K_max=2)" in evaluate.markdown_table(results)
    json.dumps(results)  # results.json must serialise
    same = early_exit_report.paired_difference(section, 1.0, 2)
    assert (same["top1_diff"], same["lo"], same["hi"]) == (0.0, 0.0, 0.0)
    assert same["exit_top1"] == fixed[2]["top1"] and same["mean_frames"] == 2.0

    os.makedirs(tmp_path / "eval")
    evaluate.write_per_video(str(tmp_path / "eval"), results.pop("per_video"))
    (tmp_path / "eval" / "results.json").write_text(json.dumps(results))
    compared = compare.compare(config, str(tmp_path))
    pairs = {(r["baseline"], r["k"], r["metric"]) for r in compared["nsnet_vs_baselines"]}
    assert {("mgsampler", 2, "top1"), ("scsampler", 1, "evidence_recall")} <= pairs
    exit_rows = compared["early_exit_vs_fixed_k"]
    assert len(exit_rows) == len(section["rows"]) * 2 and all(
        r["lo"] <= r["top1_diff"] <= r["hi"] for r in exit_rows
    )

    out = early_exit_speed.measure(set_fields(config, eval__early_exit_thresholds="0.5"), tmp_path)
    assert set(out["fixed_k"]) == {1, 2} and out["early_exit"][0.5]["videos_per_s"] > 0
    assert 1 <= out["early_exit"][0.5]["mean_frames"] <= 2
    assert jax.default_backend() == "cpu"
