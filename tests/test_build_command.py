"""python -m nsnet_jax.input_pipeline.build: the same dataset as TFDS's own build, in worker
processes, resumable, and without Apache Beam (issue 12 item 5)."""

from __future__ import annotations

import glob
import os
import subprocess
import sys

import pytest
import tensorflow_datasets as tfds

from nsnet_jax.input_pipeline import build, build_pool, pipeline, video_io
from nsnet_jax.input_pipeline.datasets.video_folder import video_folder_dataset_builder as vf
from tests.helpers import brightness_ramp, write_frames, write_mp4

T = 4
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def manual(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("manual")
    os.makedirs(root / "videos")
    (root / "classes.txt").write_text("archery\nbowling\ncycling\n")
    for i, n in enumerate((16, 17, 18, 20, 3)):  # the fcvid preset samples 16
        write_mp4(str(root / "videos" / f"v{i}.mp4"), brightness_ramp(n, 24, 32))
    write_frames(str(root / "frames" / "f0"), brightness_ramp(16, 24, 32))
    (root / "train.txt").write_text(
        "videos/v0.mp4 0\nvideos/v1.mp4 1\nvideos/v2.mp4 2\nvideos/v3.mp4 0 1\n"
        "videos/v4.mp4 1\nframes/f0 16 2\nvideos/gone.mp4 0\n"
    )
    (root / "test.txt").write_text("videos/v1.mp4 2\nvideos/v2.mp4 0\n")
    return str(root)


def _config(name: str, **kw) -> vf.VideoFolderConfig:
    return vf.VideoFolderConfig(name=name, num_frames=T, short_side=16, multi_label=True, **kw)


def _records(data_dir: str, name: str, split: str) -> dict[str, dict]:
    source = tfds.data_source(
        f"video_folder/{name}",
        split=split,
        data_dir=data_dir,
        decoders={"video": pipeline._PassThrough()},  # the stored JPEG bytes
    )
    return {r["video_id"].decode(): r for r in (source[i] for i in range(len(source)))}


def _shard_bytes(data_dir: str, name: str) -> dict[str, bytes]:
    files = glob.glob(os.path.join(data_dir, "video_folder", name, "*", "*.array_record-*"))
    return {os.path.basename(f): open(f, "rb").read() for f in files}


def test_own_build_writes_the_same_dataset_as_tfds(manual, tmp_path):
    ref_dir, own_dir = str(tmp_path / "ref"), str(tmp_path / "own")
    cfg = _config("same")
    ref = vf.Builder(config=cfg, data_dir=ref_dir)
    ref.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual))
    own = build.build_video_folder(cfg, manual, own_dir, workers=2)
    for split in ("train", "test"):
        a, b = _records(ref_dir, "same", split), _records(own_dir, "same", split)
        assert sorted(a) == sorted(b) and len(a) > 0
        for vid in a:
            assert list(a[vid]["video"]) == list(b[vid]["video"]), vid  # same bytes per frame
            assert list(a[vid]["labels"]) == list(b[vid]["labels"])
    shards = _shard_bytes(ref_dir, "same")
    assert shards and shards == _shard_bytes(own_dir, "same")
    report = os.path.join(own.data_dir, "skip_report-train.tsv")
    assert "video file not found" in open(report).read()
    assert not glob.glob(os.path.join(os.path.dirname(own.data_dir), "build_cache-*"))


class _RefuseToDecode(vf._Processor):
    """Skips the video `refuse` if asked to decode it (picklable for the worker processes)."""

    refuse = ""

    def frames(self, entry) -> list[bytes]:
        if entry.video_id == self.refuse:
            raise video_io.SkipVideo("decoded again")
        return super().frames(entry)


def test_stopped_build_resumes_without_redoing_finished_videos(manual, tmp_path):
    classes, by_split, _ = vf.read_manual_dir(manual, ("train",))
    entries = by_split["train"]
    process = vf._Processor(_config("resume"), classes, threads=1)
    cache = str(tmp_path / "cache")
    report = vf._Report(str(tmp_path / "r.tsv"), str(tmp_path / "r.tsv"), "train", [], 7)
    stream = build_pool.generate(entries, process, report, 2, cache)
    first_key, _ = next(stream)
    stream.close()  # stopped after the first finished video
    assert len(glob.glob(os.path.join(cache, "*.frames.npz"))) >= 1
    # The rerun must not decode it again: its decoder now refuses that video.
    refusing = _RefuseToDecode(_config("resume"), classes, threads=1)
    refusing.refuse = first_key
    keys = [k for k, _ in build_pool.generate(entries, refusing, report, 2, cache)]
    assert first_key in keys
    assert sorted(keys) == sorted(
        e.video_id for e in entries if e.video_id not in ("videos/v4.mp4", "videos/gone.mp4")
    )


def test_build_command_runs_with_apache_beam_blocked(manual, tmp_path):
    code = (
        "import sys; sys.modules['apache_beam'] = None\n"
        "from input_pipeline import build\n"
        "sys.exit(build.main(sys.argv[1:]))\n"
    )
    # fcvid is a Beam preset under `tfds build`; the own build needs no Beam for it.
    args = ["video_folder", "--config=fcvid", f"--manual_dir={manual}", "--workers=2"]
    result = subprocess.run(
        [sys.executable, "-c", code, *args, f"--data_dir={tmp_path}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "built video_folder/fcvid/1.0.0" in result.stdout
    assert "videos/s, ETA" in result.stdout
    assert sorted(_records(str(tmp_path), "fcvid", "test")) == ["videos/v1.mp4", "videos/v2.mp4"]
