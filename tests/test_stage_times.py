"""`python -m nsnet_jax.bench.stage_times --tiny`: every part of every path once, with GMACs.

No timing is asserted (the command is for reading, on a quiet machine); what is checked: each
path's parts appear once with a positive median, the sum-of-parts line names the parts that add up
to the whole, and XLA's GMACs of the parts add up to the whole's, so the split covers the model.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMPUTE = {  # parts with a FLOP count; the copies have none
    "inference": [
        "sampler_backbone", "temporal_head", "topk_gather", "recognizer", "end_to_end",
    ],
    "recognizer_step": [
        "tsn_segments", "recognizer_fwd", "recognizer_fwd_bwd", "optimizer_update", "step",
    ],
    "sampler_step": [
        "backbone_fwd", "backbone_fwd_bwd", "temporal_head_fwd", "head_and_losses_fwd",
        "head_and_losses_fwd_bwd", "optimizer_update", "step",
    ],
}  # fmt: skip
COPIES = {
    "inference": ["h2d_sampler_frames", "h2d_frames", "d2h_outputs"],
    "recognizer_step": ["h2d_batch"],
    "sampler_step": ["h2d_batch"],
}
SUMMED = {
    "inference": ["sampler_backbone", "temporal_head", "topk_gather", "recognizer"],
    "recognizer_step": ["tsn_segments", "recognizer_fwd_bwd", "optimizer_update"],
    "sampler_step": ["backbone_fwd_bwd", "head_and_losses_fwd_bwd", "optimizer_update"],
}
WHOLE = {"inference": "end_to_end", "recognizer_step": "step", "sampler_step": "step"}


@pytest.fixture(scope="module")
def records():
    out = subprocess.run(
        [sys.executable, "-m", "nsnet_jax.bench.stage_times", "--config=configs/activitynet.py",
         "--tiny", "--batch=2"],
        cwd=ROOT, capture_output=True, text=True, timeout=900, check=True,
    ).stdout  # fmt: skip
    return [json.loads(line) for line in out.strip().splitlines()]  # every line one JSON object


def test_every_part_once_per_path_with_a_positive_median(records):
    names = [r["name"] for r in records]
    assert "matmul_peak" in names
    for path in COMPUTE:
        expected = COMPUTE[path] + COPIES[path]
        found = [r["part"] for r in records if r.get("path") == path and "part" in r]
        assert sorted(found) == sorted(expected), (path, found)
        for r in records:
            if r.get("path") == path and "part" in r:
                assert r["unit"] == "s" and r["value"] == r["median_s"] > 0, r
                assert r["batch"] == 2 and r["shapes"]["num_frames"] == 4, r
                if r["part"] in COMPUTE[path]:
                    assert r["gmacs"] > 0 and r["mfu"] > 0, r
                else:
                    assert "gmacs" not in r, r


def test_sum_of_parts_line_and_gmacs_add_up(records):
    by_name = {r["name"]: r for r in records}
    for path in COMPUTE:
        line = by_name[f"{path}/sum_of_parts"]
        assert line["parts"] == SUMMED[path] and line["whole"] == WHOLE[path]
        medians = [by_name[f"{path}/{p}"]["median_s"] for p in SUMMED[path]]
        assert line["value"] == pytest.approx(sum(medians), rel=1e-2)
        assert line["whole_s"] == by_name[f"{path}/{WHOLE[path]}"]["median_s"]
        assert "unexplained_share" in line and line["copies_s"] > 0
        gmacs = sum(by_name[f"{path}/{p}"]["gmacs"] for p in SUMMED[path])
        whole = by_name[f"{path}/{WHOLE[path]}"]["gmacs"]
        # inference splits exactly; a step adds its gradient norm and loss bookkeeping
        assert gmacs == pytest.approx(whole, rel=0.01 if path == "inference" else 0.1), path
