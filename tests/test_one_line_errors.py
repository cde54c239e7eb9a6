"""Errors a user fixes are one line that names the thing and the fix, without a traceback
(issue 26 item 4): `error: ...` on stderr, exit code 2 (1 for a full disk); --verbose or
NSNET_VERBOSE=1 brings the traceback back."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nsnet_jax.inference.trained import CheckpointMismatch, load_trained
from nsnet_jax.input_pipeline import build, video_io
from nsnet_jax.input_pipeline.datasets.video_folder import video_folder_dataset_builder as vf
from tests.helpers import brightness_ramp, tiny_predict_config, write_mp4, write_workdir

ROOT = Path(__file__).resolve().parents[1]
# The smallest entry point: the shared flags, the tiny config, a main that only says it ran.
PROGRAM = (
    "from nsnet_jax import cli\n"
    "cli.run(lambda config, workdir, argv: print('ran'), "
    "default_config='tests/tiny_train_config.py')\n"
)


def _run(args: list[str], **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
    )


def _one_line(result: subprocess.CompletedProcess, code: int = 2) -> str:
    """The `error: ...` line, after checking exit code and that no traceback came with it."""
    assert result.returncode == code, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr[-3000:]
    return errors[0]


def test_a_misspelt_override_names_the_field_the_closest_name_and_the_file():
    line = _one_line(_run(["-c", PROGRAM, "--config.model.num_selct=4"]))
    assert line == (
        "error: --config.model.num_selct=4: tests/tiny_train_config.py has no field "
        "model.num_selct; did you mean model.num_select?"
    )


def test_an_unknown_section_names_the_sections_it_may_mean():
    line = _one_line(_run(["-c", PROGRAM, "--config.training.lr=0.1"]))
    assert line == (
        "error: --config.training.lr=0.1: tests/tiny_train_config.py has no section training; "
        "did you mean sampler_training or pretrain or recognizer_training?"
    )


def test_verbose_brings_the_traceback_back():
    result = _run(["-c", PROGRAM, "--config.training.lr=0.1"], NSNET_VERBOSE="1")
    assert result.returncode != 0 and "Traceback" in result.stderr
    result = _run(["-c", PROGRAM, "--config.training.lr=0.1", "--verbose"])
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_a_workdir_that_is_a_file_is_named(tmp_path):
    workdir = tmp_path / "run.txt"
    workdir.write_text("not a directory\n")
    args = ["-m", "nsnet_jax.main", "--config=tests/tiny_train_config.py", f"--workdir={workdir}"]
    assert _one_line(_run(args)) == (
        f"error: --workdir={workdir} is a file, not a directory: give --workdir a directory (a "
        "missing one is created), or move the file away"
    )


def test_predict_with_a_checkpoint_of_another_architecture(tiny_workdir, tmp_path):  # noqa: F811
    other = str(tmp_path / "conv1d")  # a temporal conv the tiny workdir's checkpoint lacks
    write_workdir(other, tiny_predict_config(model__sampler__temporal="conv1d"))
    result = _run(
        ["-m", "nsnet_jax.predict", f"--workdir={other}",
         f"--checkpoint={tiny_workdir}/sampler/final", "video.mp4"]
    )  # fmt: skip
    line = _one_line(result)
    assert line.startswith(
        f"error: checkpoint {tiny_workdir}/sampler/final does not fit the config: "
        "params/sampler/temporal/conv/bias is absent in the checkpoint, (32,) in the config (2 "
        "parameter(s) differ; backbones patch_cnn/resnet18, temporal conv1d, 5 classes)"
    ), line
    assert line.endswith("pass the config the checkpoint was trained with (--workdir=ITS_RUN "
                         "without --config reads it)")  # fmt: skip
    # The other way round, parameters the config lacks, is named just the same.
    with pytest.raises(CheckpointMismatch, match="conv/bias is \\(32,\\) in the checkpoint, "):
        load_trained(tiny_workdir, checkpoint=os.path.join(other, "sampler", "final"))


@pytest.fixture(scope="module")
def predicted(tiny_workdir, tmp_path_factory):  # noqa: F811
    """predict on a still image, its --out in a directory that does not exist yet."""
    tmp = tmp_path_factory.mktemp("predict")
    photo = str(tmp / "photo.jpg")
    Image.fromarray(np.full((40, 48, 3), 128, np.uint8)).save(photo)
    out = tmp / "new" / "dir" / "lines.jsonl"
    result = _run(["-m", "nsnet_jax.predict", f"--workdir={tiny_workdir}", f"--out={out}", photo])
    return result, out, photo


def test_predict_creates_the_missing_directory_of_out(predicted):
    result, out, _ = predicted
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert out.is_file() and Path(f"{out}.summary.json").is_file()


def test_an_image_given_as_a_video_is_called_a_still_image(predicted, tmp_path):
    result, out, photo = predicted
    with pytest.raises(video_io.SkipVideo) as info:  # the reader predict and builds share
        video_io.decode_sampled_frames(photo, 6)
    assert str(info.value) == video_io.STILL_IMAGE  # was: "1 frames < num_frames=6"
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    [line] = [json.loads(x) for x in out.read_text().splitlines()]
    assert line == {"path": photo, "error": video_io.STILL_IMAGE}
    assert video_io.STILL_IMAGE == (
        "a still image, not a video (1 frame): give a video file (mp4/avi/webm/mkv/mov/m4v) or "
        "a folder of the video's frames (image_00001.jpg, ... in order)"
    )
    assert f"predict: {photo}: {video_io.STILL_IMAGE}" in result.stderr
    # A dataset build's list line naming an image is reported the same way.
    with pytest.raises(video_io.SkipVideo, match="a still image, not a video"):
        video_io.read_frame_folder(photo, 4, short_side=16, quality=90)


def _manual(root: Path, train: str, videos: tuple[str, ...] = ()) -> str:
    (root / "videos").mkdir(parents=True)
    (root / "classes.txt").write_text("archery\nbowling\n")
    for name in videos:
        write_mp4(str(root / "videos" / name), brightness_ramp(16, 16, 16))
    (root / "train.txt").write_text(train)
    (root / "test.txt").write_text("videos/a.mp4 1\n")
    return str(root)


def _build(manual: str, data_dir: str) -> list[str]:
    return ["video_folder", "--config=default", f"--manual_dir={manual}",
            f"--data_dir={data_dir}", "--workers=1"]  # fmt: skip


def _stderr_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [x for x in err.splitlines() if x.startswith("error: ")]
    assert len(lines) == 1, err
    return lines[0]


def test_build_with_an_empty_train_list_names_the_list(tmp_path, capsys):
    manual = _manual(tmp_path / "m", "\n")
    assert build.main(_build(manual, str(tmp_path / "out"))) == 2
    assert _stderr_line(capsys) == (
        f"error: video_folder train: {manual}/train.txt lists no video: add one line per video, "
        "'<video file> <label>' or '<frame folder> <num_frames> <label>' (see the manual_dir "
        "layout in the README), or leave the split out of the config's splits"
    )


def test_build_whose_every_line_is_skipped_writes_the_report_and_names_it(tmp_path, capsys):
    manual = _manual(tmp_path / "m", "videos/gone.mp4 0\nvideos/a.mp4 7\n", videos=("a.mp4",))
    out = tmp_path / "out"
    assert build.main(_build(manual, str(out))) == 2
    report = out / "video_folder" / "default" / "skip_report-train.tsv"
    assert _stderr_line(capsys) == (
        f"error: video_folder train: no usable video in {manual}/train.txt, 2 skipped (1 label "
        f"'7' is not in the class list, 1 video file not found); the reason per line is in "
        f"{report}: fix those lines (or the files they name) and rerun"
    )
    rows = [line.split("\t") for line in report.read_text().splitlines()[1:]]
    assert [(r[0], r[2]) for r in rows] == [
        ("videos/a.mp4", "label '7' is not in the class list"),
        ("videos/gone.mp4", f"video file not found: {manual}/videos/gone.mp4"),
    ]


def test_build_onto_a_full_disk_names_the_path_and_what_the_rerun_keeps(
    tmp_path, capsys, monkeypatch
):
    manual = _manual(tmp_path / "m", "videos/a.mp4 0\nvideos/b.mp4 1\n", ("a.mp4", "b.mp4"))
    out = tmp_path / "out"

    def full(self, skipped, examples=None):  # the videos are decoded and cached by now
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(vf._Report, "write", full)
    assert build.main(_build(manual, str(out))) == 1
    line = _stderr_line(capsys)
    [cache] = (out / "video_folder" / "default").glob("build_cache-*")
    assert line.startswith(f"error: disk full while building video_folder/default in {out} (")
    assert line.endswith(
        " MiB free on that filesystem): free space there, then rerun the same command; 2 decoded "
        f"video(s) are kept in {cache}, not decoded again"
    ), line
