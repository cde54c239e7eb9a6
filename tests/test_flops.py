"""GMACs per video at the paper's shapes land within 5% of the paper's GFLOPs column."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from nsnet_jax.costs.flops import count_gmacs
from tests.helpers import parse_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.parametrize(
    "config_file,paper", [("activitynet.py", 26.0), ("fcvid.py", 26.0), ("mini_kinetics.py", 18.1)]
)
def test_video_gmacs_within_5_percent_of_the_paper(config_file, paper):
    result = count_gmacs(parse_config(config_file))
    assert abs(result["video_gmacs"] - paper) / paper < 0.05, result
    # the composition is consistent with the jitted end-to-end function's own count
    assert result["end_to_end_gmacs"] == pytest.approx(result["video_gmacs"], rel=0.01)
    assert result["video_gmacs"] / result["all_frames_gmacs"] < 0.45


def test_flops_command_prints_one_json_line():
    out = subprocess.run(
        [sys.executable, "-m", "nsnet_jax.flops", "--config=configs/activitynet.py",
         "--config.data.recognizer_size=64", "--config.data.sampler_size=32"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=True,
    ).stdout.strip().splitlines()  # fmt: skip
    assert len(out) == 1
    record = json.loads(out[0])
    for key in ("sampler_gmacs", "recognizer_gmacs_per_frame", "video_gmacs", "all_frames_gmacs"):
        assert record[key] > 0
    assert record["video_gmacs"] == pytest.approx(
        record["sampler_gmacs"] + 6 * record["recognizer_gmacs_per_frame"], rel=1e-3
    )
