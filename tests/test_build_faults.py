"""Fault injection for the video_folder build: duplicate list lines, paths with spaces, incomplete
frame folders, and a skip report that is where the log says it is (issue 11 items 1-4)."""

from __future__ import annotations

import logging
import os
import re
import socket
import subprocess
import sys

import tensorflow_datasets as tfds

from nsnet_jax.input_pipeline import build
from nsnet_jax.input_pipeline.datasets.video_folder import video_folder_dataset_builder as vf
from tests.helpers import brightness_ramp, write_frames, write_mp4

T = 4
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _manual(root, lines: str, videos=("a.mp4", "b.mp4")) -> str:
    os.makedirs(root / "videos", exist_ok=True)
    (root / "classes.txt").write_text("archery\nbowling\ncycling\n")
    for name in videos:
        write_mp4(str(root / "videos" / name), brightness_ramp(8, 16, 16))
    (root / "train.txt").write_text(lines)
    return str(root)


def _build(manual: str, data_dir: str, name: str, multi_label: bool):
    config = vf.VideoFolderConfig(
        name=name, splits=("train",), num_frames=T, short_side=16, multi_label=multi_label
    )
    builder = vf.Builder(config=config, data_dir=data_dir)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual))
    return builder


def _records(data_dir: str, name: str) -> dict[str, dict]:
    source = tfds.data_source(f"video_folder/{name}", split="train", data_dir=data_dir)
    return {r["video_id"].decode(): r for r in (source[i] for i in range(len(source)))}


def _report_rows(builder) -> list[list[str]]:
    path = os.path.join(os.fspath(builder.data_dir), "skip_report-train.tsv")
    return [line.split("\t") for line in open(path).read().splitlines()[1:]]


def test_duplicate_lines_merge_labels_in_multi_label_configs(tmp_path):
    lines = "videos/a.mp4 0\nvideos/b.mp4 1\nvideos/a.mp4 2\nvideos/a.mp4 archery\n"
    manual = _manual(tmp_path / "m", lines)
    builder = _build(manual, str(tmp_path / "out"), "dup_multi", multi_label=True)
    recs = _records(str(tmp_path / "out"), "dup_multi")
    assert sorted(recs) == ["videos/a.mp4", "videos/b.mp4"]
    assert [int(x) for x in recs["videos/a.mp4"]["labels"]] == [0, 2]
    assert _report_rows(builder) == []


def test_conflicting_duplicate_keeps_first_line_and_is_reported(tmp_path):
    lines = "videos/a.mp4 0\nvideos/b.mp4 1\nvideos/a.mp4 2\nvideos/a.mp4 archery\n"
    manual = _manual(tmp_path / "m", lines)
    builder = _build(manual, str(tmp_path / "out"), "dup_single", multi_label=False)
    recs = _records(str(tmp_path / "out"), "dup_single")
    assert sorted(recs) == ["videos/a.mp4", "videos/b.mp4"]
    assert int(recs["videos/a.mp4"]["label"]) == 0
    rows = _report_rows(builder)
    assert len(rows) == 1, rows  # line 4 names the same class as line 1: not a conflict
    assert rows[0][0] == "videos/a.mp4"
    assert rows[0][2].startswith("duplicate with a different label: train.txt line 3 says '2'")
    assert rows[0][2].endswith("kept line 1")


def test_logged_skip_report_path_exists_after_the_build(tmp_path, caplog):
    manual = _manual(tmp_path / "m", "videos/a.mp4 0\nvideos/b.mp4 7\n")
    with caplog.at_level(logging.WARNING):
        _build(manual, str(tmp_path / "out"), "report_path", multi_label=False)
    logged = [
        m.group(1)
        for r in caplog.records
        if (m := re.search(r"list in (\S+skip_report-train\.tsv)", r.getMessage()))
    ]
    assert logged, [r.getMessage() for r in caplog.records]
    assert os.path.isfile(logged[0]), logged[0]
    assert "incomplete" not in logged[0]
    assert "label '7' is not in the class list" in open(logged[0]).read()


def test_paths_with_spaces_read_as_the_file_they_name(tmp_path):
    lines = "videos/my clip.mp4 1\nvideos/b  two.mp4\t2\n"
    manual = _manual(tmp_path / "m", lines, videos=("my clip.mp4", "b  two.mp4"))
    builder = _build(manual, str(tmp_path / "out"), "spaces", multi_label=False)
    recs = _records(str(tmp_path / "out"), "spaces")
    assert {k: int(v["label"]) for k, v in recs.items()} == {
        "videos/my clip.mp4": 1,
        "videos/b  two.mp4": 2,
    }
    assert _report_rows(builder) == []


def test_frame_folder_with_fewer_frames_than_listed_is_skipped_with_both_counts(tmp_path):
    root = tmp_path / "m"
    (root).mkdir()
    (root / "classes.txt").write_text("archery\nbowling\n")
    write_frames(str(root / "frames" / "full"), brightness_ramp(8, 16, 16))
    write_frames(str(root / "frames" / "cut"), brightness_ramp(8, 16, 16))
    (root / "train.txt").write_text("frames/full 8 0\nframes/cut 30 1\n")
    builder = _build(str(root), str(tmp_path / "out"), "short_folder", multi_label=False)
    assert sorted(_records(str(tmp_path / "out"), "short_folder")) == ["frames/full"]
    rows = _report_rows(builder)
    assert [r[0] for r in rows] == ["frames/cut"]
    assert rows[0][2] == "frame folder incomplete: 8 frames on disk, the list says 30"


def test_list_lines_split_on_tab_or_longest_existing_prefix(tmp_path):
    (tmp_path / "a b").mkdir()
    (tmp_path / "a b" / "c.mp4").write_bytes(b"")
    assert vf._split_line(str(tmp_path), "a b/c.mp4 3 4") == ("a b/c.mp4", ["3", "4"])
    assert vf._split_line(str(tmp_path), "x y.mp4\t3 4") == ("x y.mp4", ["3", "4"])
    assert vf._split_line(str(tmp_path), "missing.mp4 3") == ("missing.mp4", ["3"])


def test_the_next_build_removes_a_killed_builds_incomplete_folder(tmp_path, caplog):
    """TFDS builds into NAME/CONFIG/incomplete.XXXX; a build killed with -9 leaves it behind."""
    manual = _manual(tmp_path / "m", "videos/a.mp4 0\nvideos/b.mp4 1\n")
    out = tmp_path / "out"
    left = out / "video_folder" / "stale" / "incomplete.AB12CD_1.0.0"
    os.makedirs(left)
    (left / "video_folder-train.array_record-00000-of-00001").write_bytes(b"half")
    config = vf.VideoFolderConfig(name="stale", splits=("train",), num_frames=T, short_side=16)
    with caplog.at_level(logging.WARNING):
        built = build.build_video_folder(config, manual, str(out), workers=1)
    assert not left.exists()
    assert f"removed {left}, left behind by an interrupted build" in caplog.text
    assert sorted(p.name for p in (out / "video_folder" / "stale").iterdir()) == ["1.0.0"]
    assert len(_records(str(out), "stale")) == 2 and built.is_prepared()


HOLD_BUILD_LOCK = """
import sys
from nsnet_jax.input_pipeline import build
from nsnet_jax.input_pipeline.datasets.video_folder import video_folder_dataset_builder as vf
with build.build_lock(vf.Builder(config="fcvid", data_dir=sys.argv[1]), sys.argv[1]):
    print("held", flush=True)
    sys.stdin.read()  # until the test closes our stdin
"""


def test_a_second_build_of_one_dataset_exits_at_once_naming_the_first(tmp_path):
    manual = _manual(tmp_path / "m", "videos/a.mp4 0\nvideos/b.mp4 1\n")
    out = str(tmp_path / "out")
    env = dict(os.environ, PYTHONPATH=REPO)
    first = subprocess.Popen([sys.executable, "-c", HOLD_BUILD_LOCK, out], env=env, cwd=REPO,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert first.stdout.readline().strip() == "held"
        second = subprocess.run(
            [sys.executable, "-m", "nsnet_jax.input_pipeline.build", "video_folder",
             "--config=fcvid", f"--manual_dir={manual}", f"--data_dir={out}", "--workers=1"],
            env=env, cwd=REPO, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    finally:
        first.stdin.close()
        first.wait(timeout=60)
    assert second.returncode == 2, second.stderr[-3000:]
    # the project's one-line errors start with "error:"; TF's start-up lines can say "errors"
    # (oneDNN's round-off notice, printed on CPUs where it is on by default)
    lines = [x for x in second.stderr.splitlines() if "error" in x.lower() and "oneDNN" not in x]
    assert len(lines) == 1 and "Traceback" not in second.stderr, second.stderr[-3000:]
    assert lines[0].startswith(
        f"error: the build of video_folder/fcvid in {out} is in use by another writer: "
        f"host {socket.gethostname()} pid {first.pid} (started "
    ), lines[0]
    assert "or use another --data_dir" in lines[0]
    assert not os.path.exists(os.path.join(out, "video_folder", "fcvid", "1.0.0"))
    assert not os.path.exists(os.path.join(out, "video_folder", "fcvid", build.LOCK_NAME))
