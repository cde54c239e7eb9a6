"""The ablation runner: seeds, paired bootstrap intervals, partial results and resume."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nsnet_jax import ablate, pipeline_run
from tests import tiny_train_config
from tests.tiny import set_fields


def test_paired_bootstrap_interval_covers_the_shift_and_shrinks_with_more_videos():
    rng = np.random.default_rng(0)
    small = 0.1 + rng.normal(0, 1, (3, 200))
    large = 0.1 + rng.normal(0, 1, (3, 5000))
    mean_s, lo_s, hi_s = ablate.paired_bootstrap(small)
    mean_l, lo_l, hi_l = ablate.paired_bootstrap(large)
    assert lo_l < 0.1 < hi_l and lo_s < mean_s < hi_s
    assert hi_l - lo_l < 0.5 * (hi_s - lo_s)
    assert ablate.paired_bootstrap(np.ones((2, 10))) == (1.0, 1.0, 1.0)


def test_paired_bootstrap_drops_videos_without_evidence_and_rejects_unpaired_nans():
    diff = np.array([[1.0, np.nan, 0.0], [1.0, np.nan, 0.0]])
    assert ablate.paired_bootstrap(diff)[0] == 0.5
    with pytest.raises(ValueError, match="NaN in every seed"):
        ablate.paired_bootstrap(np.array([[1.0, np.nan], [1.0, 0.0]]))


def test_sweep_over_seeds_writes_table_figure_and_resumes(tiny_fashion_dir, tmp_path, monkeypatch):
    config = set_fields(tiny_train_config.get_config(), data__data_dir=tiny_fashion_dir)
    rows = ablate.run(config, str(tmp_path), only=["fusion_rank"], seeds=2)
    assert {(r["variant"], r["k"]) for r in rows} == {
        (v, k) for v in ("default", "fusion_rank") for k in (1, 2)
    }  # the reference variant is added for the paired differences
    for r in rows:
        assert r["seeds"] == 2 and len(r["top1_per_seed"]) == 2
        assert r["top1"] == pytest.approx(np.mean(r["top1_per_seed"]))
        if r["variant"] == "fusion_rank":
            d = r["top1_diff"]
            assert d["ci95"][0] <= d["mean"] <= d["ci95"][1] and d["paired_seeds"] == 2
    per_video = ablate._load(str(tmp_path / "fusion_rank" / "seed1" / "per_video.npz"))
    assert per_video["correct_1"].shape == per_video["video_id"].shape
    table = (tmp_path / "ablation.md").read_text()
    assert "| fusion_rank | model.sampler.fusion=rank | 2 |" in table
    assert (tmp_path / "ablation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # resume: a finished seed is not retrained; a missing one is, and a third seed is added
    (tmp_path / "fusion_rank" / "seed1" / "per_video.npz").unlink()
    trained = []
    real = pipeline_run.train_and_evaluate

    def recording(cfg, workdir, *args, **kwargs):
        trained.append((cfg.stage, workdir))
        return real(cfg, workdir, *args, **kwargs)

    monkeypatch.setattr(pipeline_run, "train_and_evaluate", recording)
    ablate.run(config, str(tmp_path), only=["default", "fusion_rank"], seeds=3)
    # each (variant, seed) runs every stage in its own workdir; stages 1-2 are the shared base's
    sampler_runs = sorted("/".join(w.split("/")[-2:]) for _, w in trained if "/seed" in w)
    assert sampler_runs == ["default/seed2", "fusion_rank/seed1", "fusion_rank/seed2"]
    saved = json.loads((tmp_path / "ablation.json").read_text())
    assert {r["seeds"] for r in saved} == {3}
    with pytest.raises(ValueError, match="unknown ablation variants"):
        ablate.run(config, str(tmp_path), only=["nope"])
