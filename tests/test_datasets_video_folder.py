"""video_folder builds a user's mp4 files and AR-Net frame folders; bad videos are skipped."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

from nsnet_jax.input_pipeline import pipeline, video_io
from nsnet_jax.input_pipeline.datasets.video_folder import video_folder_dataset_builder as vf
from tests.helpers import brightness_ramp, write_frames, write_mp4

T = 4


@pytest.fixture(scope="module")
def manual_dir(tmp_path_factory) -> str:
    root = str(tmp_path_factory.mktemp("manual"))
    os.makedirs(os.path.join(root, "videos"))
    with open(os.path.join(root, "classes.txt"), "w") as f:
        f.write("archery\nbowling\ncycling\n")
    for name, n in (("v0", 12), ("v1", 9), ("v2", 20), ("short", 3)):
        write_mp4(os.path.join(root, "videos", f"{name}.mp4"), brightness_ramp(n))
    with open(os.path.join(root, "videos", "corrupt.mp4"), "wb") as f:
        f.write(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))
    with open(os.path.join(root, "train.txt"), "w") as f:
        f.write(
            "videos/v0.mp4 0\nvideos/corrupt.mp4 1\nvideos/v1.mp4 bowling\n"
            "videos/v2.mp4 1 2\nvideos/short.mp4 0\nvideos/v0.mp4 9\n"
        )
    for name, n in (("f0", 12), ("f1", 7)):
        write_frames(os.path.join(root, "frames", name), brightness_ramp(n, 40, 30))
    with open(os.path.join(root, "test.txt"), "w") as f:
        f.write("frames/f0 12 2\nframes/f1 7 0 1\n")
    return root


def _build(manual: str, data_dir: str, name: str, **kw) -> tfds.core.DatasetBuilder:
    config = vf.VideoFolderConfig(name=name, num_frames=T, short_side=32, multi_label=True, **kw)
    builder = vf.Builder(config=config, data_dir=data_dir)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual))
    return builder


def _records(data_dir: str, name: str, split: str) -> dict[str, dict]:
    source = tfds.data_source(f"video_folder/{name}", split=split, data_dir=data_dir)
    return {r["video_id"].decode(): r for r in (source[i] for i in range(len(source)))}


def _check_round_trip(builder, data_dir: str, name: str) -> None:
    assert builder.info.features["label"].names == ["archery", "bowling", "cycling"]
    train = _records(data_dir, name, "train")
    assert sorted(train) == ["videos/v0.mp4", "videos/v1.mp4", "videos/v2.mp4"]
    assert [int(x) for x in train["videos/v2.mp4"]["labels"]] == [1, 2]
    assert train["videos/v1.mp4"]["label"] == 1 and train["videos/v0.mp4"]["label"] == 0
    for rec in train.values():
        video = np.stack(rec["video"])
        assert video.shape == (T, 32, 43, 3)  # 48x64 resized to short side 32
        assert (np.diff(video.mean(axis=(1, 2, 3))) > 5).all(), "frame order survives"
    # v0 has 12 frames: segment centres 1, 4, 7, 10 -> grey 30, 60, 90, 120.
    means = np.stack(train["videos/v0.mp4"]["video"]).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(means, [30, 60, 90, 120], atol=4)
    test = _records(data_dir, name, "test")
    assert sorted(test) == ["frames/f0", "frames/f1"]
    f0 = np.stack(test["frames/f0"]["video"])
    assert f0.shape == (T, 43, 32, 3)  # 40x30 (HxW) resized to short side 32
    np.testing.assert_allclose(f0.mean(axis=(1, 2, 3)), [30, 60, 90, 120], atol=4)
    assert [int(x) for x in test["frames/f1"]["labels"]] == [0, 1]
    report = os.path.join(os.fspath(builder.data_dir), "skip_report-train.tsv")
    rows = [line.split("\t") for line in open(report).read().splitlines()[1:]]
    reasons = {path.split("/")[-1] + ":" + r.split(":")[0] for _, path, r in rows}
    assert any(x.startswith("corrupt.mp4:undecodable video") for x in reasons), reasons
    assert "short.mp4:shorter than asked" in reasons
    assert "v0.mp4:label '9' is not in the class list" in reasons
    assert len(rows) == 3
    empty = open(os.path.join(os.fspath(builder.data_dir), "skip_report-test.tsv")).read()
    assert empty.splitlines() == ["video_id\tpath\treason"]


def test_files_and_frame_folders_round_trip(manual_dir, tmp_path):
    builder = _build(manual_dir, str(tmp_path), "mixed_test")
    _check_round_trip(builder, str(tmp_path), "mixed_test")
    # And the input pipeline reads it: non-square frames, multi-hot labels, no evidence.
    cfg = dict(
        name="video_folder/mixed_test",
        data_dir=str(tmp_path),
        num_classes=3,
        num_frames=T,
        sampler_size=16,
        recognizer_size=24,
        num_threads=1,
        prefetch=1,
    )
    batches, meta = pipeline.create_dataset(
        cfg, "train", train=False, global_batch_size=2, seed=0, process_index=0, process_count=1
    )
    batches = list(batches)
    assert meta.multi_label and not meta.has_evidence and meta.num_examples == 3
    assert batches[0]["frames"].shape == (2, T, 24, 24, 3)
    labels = np.concatenate([b["labels"] for b in batches])[:3]
    assert sorted(labels.sum(1).tolist()) == [1.0, 1.0, 2.0]


@pytest.mark.slow
def test_beam_direct_runner_build(manual_dir, tmp_path):
    import apache_beam  # noqa: F401 - part of the `test` extra; fail loudly if missing

    builder = _build(manual_dir, str(tmp_path), "beam_test", beam=True)
    _check_round_trip(builder, str(tmp_path), "beam_test")


def test_class_subfolder_layout(tmp_path):
    root = tmp_path / "manual"
    for cls, n in (("jump", 8), ("run", 6)):
        os.makedirs(root / "train" / cls)
        write_mp4(str(root / "train" / cls / f"{cls}0.mp4"), brightness_ramp(n))
    builder = _build(str(root), str(tmp_path / "out"), "subfolders", splits=("train",))
    assert builder.info.features["label"].names == ["jump", "run"]
    recs = _records(str(tmp_path / "out"), "subfolders", "train")
    assert {k: int(v["label"]) for k, v in recs.items()} == {"jump/jump0.mp4": 0, "run/run0.mp4": 1}


def test_missing_manual_dir_names_path_and_layout(tmp_path):
    missing = str(tmp_path / "not_here")
    with pytest.raises(Exception, match="(?s)not_here.*classes.txt"):
        _build(missing, str(tmp_path / "out"), "missing")
    os.makedirs(tmp_path / "empty_layout" / "junk")
    with pytest.raises(FileNotFoundError, match="(?s)neither train.txt nor train/.*classes.txt"):
        vf.read_manual_dir(str(tmp_path / "empty_layout"), ("train",))


def test_sample_indices_uniform_and_fps():
    np.testing.assert_array_equal(video_io.sample_indices(8, 4), [1, 3, 5, 7])
    np.testing.assert_array_equal(video_io.sample_indices(100, 3, step=10.0), [40, 50, 60])
    with pytest.raises(video_io.SkipVideo, match="empty"):
        video_io.sample_indices(0, 4)
    with pytest.raises(video_io.SkipVideo, match="shorter"):
        video_io.sample_indices(20, 4, step=10.0)


def test_corrupt_frame_in_a_folder_is_skipped_not_fatal(tmp_path):
    folder = tmp_path / "f"
    write_frames(str(folder), brightness_ramp(4))
    (folder / "image_3.jpg").write_bytes(b"garbage")
    with pytest.raises(video_io.SkipVideo, match="undecodable frame image_3.jpg"):
        video_io.read_frame_folder(str(folder), 4, short_side=16, quality=90)
