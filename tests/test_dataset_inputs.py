"""A dataset never silently disagrees with its lists, what is derived from it follows it, and its
build cache runs no code (issue 26 items 1 and 3)."""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import pickle
import shutil

import numpy as np
import pytest
import tensorflow_datasets as tfds

from nsnet_jax.input_pipeline import build, inspect, manifest, pipeline, sampler_cache
from nsnet_jax.input_pipeline.datasets.video_folder import video_folder_dataset_builder as vf
from tests.helpers import brightness_ramp, write_mp4

T = 4
LINES = "videos/v0.mp4 0\nvideos/v1.mp4 1\nvideos/v2.mp4 2\n"


def _manual(root, lines: str = LINES, videos: int = 4) -> str:
    os.makedirs(root / "videos")
    (root / "classes.txt").write_text("archery\nbowling\ncycling\n")
    for i in range(videos):
        write_mp4(str(root / "videos" / f"v{i}.mp4"), brightness_ramp(16 + i, 16, 16))
    (root / "train.txt").write_text(lines)
    (root / "test.txt").write_text("videos/v3.mp4 1\n")  # for the presets, which have a test split
    return str(root)


def _config(name: str) -> vf.VideoFolderConfig:
    return vf.VideoFolderConfig(name=name, splits=("train",), num_frames=T, short_side=16)


def _labels(data_dir: str, name: str) -> dict[str, int]:
    source = tfds.data_source(f"video_folder/{name}", split="train", data_dir=data_dir)
    return {
        r["video_id"].decode(): int(r["label"]) for r in (source[i] for i in range(len(source)))
    }


def _edit(manual: str, old: str, new: str) -> None:
    path = os.path.join(manual, "train.txt")
    text = open(path).read()
    assert old in text
    with open(path, "w") as f:
        f.write(text.replace(old, new))


def _messages(caplog) -> str:
    return "\n".join(r.getMessage() for r in caplog.records)


def test_interrupted_build_then_fixed_label_takes_the_label_from_the_list(tmp_path, caplog):
    manual, out = _manual(tmp_path / "m"), str(tmp_path / "out")
    first = build.build_video_folder(_config("fix"), manual, out, workers=1, keep_cache=True)
    # Every video decoded into the cache, the dataset not finished: what a killed build leaves.
    shutil.rmtree(first.data_dir)
    assert glob.glob(os.path.join(out, "video_folder", "fix", "build_cache-*", "train", "*"))
    _edit(manual, "videos/v1.mp4 1", "videos/v1.mp4 2")
    with caplog.at_level(logging.WARNING):
        build.build_video_folder(_config("fix"), manual, out, workers=1)
    assert "3 of 3 videos already done" in _messages(caplog)  # the cache was used ...
    assert _labels(out, "fix") == {"videos/v0.mp4": 0, "videos/v1.mp4": 2, "videos/v2.mp4": 2}


def test_finished_build_with_an_edited_label_is_refused_naming_the_line(tmp_path, capsys):
    manual, out = _manual(tmp_path / "m"), str(tmp_path / "out")
    build.build_video_folder(_config("edit"), manual, out, workers=1)
    build.build_video_folder(_config("edit"), manual, out, workers=1)  # unchanged: kept
    _edit(manual, "videos/v1.mp4 1", "videos/v1.mp4 0")
    with pytest.raises(build.InputsChangedError) as failure:
        build.build_video_folder(_config("edit"), manual, out, workers=1)
    message = str(failure.value)
    assert "train.txt line 2 is 'videos/v1.mp4 0', was 'videos/v1.mp4 1'" in message
    assert "--rebuild" in message and "\n" not in message
    assert _labels(out, "edit")["videos/v1.mp4"] == 1  # refused: nothing changed yet
    builder = build.build_video_folder(_config("edit"), manual, out, workers=1, rebuild=True)
    assert _labels(out, "edit")["videos/v1.mp4"] == 0
    assert manifest.read(builder.data_dir)["files"]["train.txt"]["lines"][1] == "videos/v1.mp4 0"
    # The command line: one line on stderr, exit status 2 (a preset config, as users run it).
    args = ["video_folder", "--config=default", f"--manual_dir={manual}", f"--data_dir={out}"]
    assert build.main([*args, "--workers=1"]) == 0
    _edit(manual, "videos/v2.mp4 2", "videos/v2.mp4 cycling")
    capsys.readouterr()  # the first build's progress bars
    assert build.main([*args, "--workers=1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: video_folder/default/1.0.0 in ") and len(err.splitlines()) == 1
    assert "train.txt line 3 is 'videos/v2.mp4 cycling', was 'videos/v2.mp4 2'" in err


def test_finished_build_with_an_added_video_is_refused_then_rebuilt(tmp_path, caplog):
    manual, out = _manual(tmp_path / "m"), str(tmp_path / "out")
    build.build_video_folder(_config("add"), manual, out, workers=1)
    with open(os.path.join(manual, "train.txt"), "a") as f:
        f.write("videos/v3.mp4 1\n")
    with pytest.raises(
        build.InputsChangedError, match="train.txt line 4 is new: 'videos/v3.mp4 1'"
    ):
        build.build_video_folder(_config("add"), manual, out, workers=1)
    with caplog.at_level(logging.WARNING):  # training reads it through load_builder too
        inspect.inspect_record("video_folder/add", "train", out, 0, None)
    assert "is older than its lists (since the build, train.txt line 4 is new" in _messages(caplog)
    assert "--rebuild" in _messages(caplog)
    build.build_video_folder(_config("add"), manual, out, workers=1, rebuild=True)
    assert sorted(_labels(out, "add")) == [f"videos/v{i}.mp4" for i in range(4)]


def test_a_video_replaced_on_disk_is_a_change(tmp_path):
    manual, out = _manual(tmp_path / "m"), str(tmp_path / "out")
    build.build_video_folder(_config("disk"), manual, out, workers=1)
    write_mp4(os.path.join(manual, "videos", "v2.mp4"), brightness_ramp(20, 16, 16)[::-1])
    with pytest.raises(build.InputsChangedError, match="train video videos/v2.mp4 changed on disk"):
        build.build_video_folder(_config("disk"), manual, out, workers=1)


def test_sampler_cache_refuses_a_changed_dataset_naming_both_fingerprints(tmp_path):
    manual, out, cache = _manual(tmp_path / "m"), str(tmp_path / "out"), str(tmp_path / "cache")
    first = build.build_video_folder(_config("sc"), manual, out, workers=1)
    before = manifest.fingerprint(first.data_dir)
    index = sampler_cache.write_cache("video_folder/sc", "train", 16, cache, data_dir=out)
    assert index["dataset_fingerprint"] == before
    data = dict(name="video_folder/sc", data_dir=out, sampler_size=16, sampler_cache_dir=cache)
    kw = dict(train=False, global_batch_size=3, seed=0, views=("sampler",))
    next(pipeline.create_dataset(data, "train", **kw)[0])  # the same dataset: read
    _edit(manual, "videos/v0.mp4 0", "videos/v0.mp4 1")
    second = build.build_video_folder(_config("sc"), manual, out, workers=1, rebuild=True)
    after = manifest.fingerprint(second.data_dir)
    assert after != before
    with pytest.raises(ValueError, match=f"fingerprint {before}; the dataset now has .* {after}"):
        pipeline.create_dataset(data, "train", **kw)


def test_a_rebuild_from_the_same_inputs_keeps_the_fingerprint(tmp_path):
    manual, out = _manual(tmp_path / "m"), str(tmp_path / "out")
    first = manifest.fingerprint(build.build_video_folder(_config("fp"), manual, out, 1).data_dir)
    again = build.build_video_folder(_config("fp"), manual, out, workers=1, rebuild=True)
    assert manifest.fingerprint(again.data_dir) == first
    # A finished dataset needs no manual_dir: without one it is kept as it is.
    os.rename(manual, manual + ".away")
    kept = build.build_video_folder(_config("fp"), manual, out, workers=1)
    assert manifest.fingerprint(kept.data_dir) == first


def test_finished_stage_refuses_a_rebuilt_dataset_naming_both_fingerprints(tmp_path):
    from nsnet_jax.train import provenance
    from tests.tiny import tiny_config

    manual, out, workdir = _manual(tmp_path / "m"), str(tmp_path / "out"), str(tmp_path / "wd")
    build.build_video_folder(_config("prov"), manual, out, workers=1)
    config = tiny_config(data__name="video_folder/prov", data__data_dir=out)
    for stage in ("recognizer", "pretrain"):
        provenance.write_record(config, workdir, stage)
        (tmp_path / "wd" / stage / "DONE.json").write_text("{}")
    before = provenance.read_record(workdir, "recognizer")[provenance.DATASET_FIELD]
    assert provenance.DATASET_FIELD not in provenance.read_record(workdir, "pretrain")
    assert provenance.check_finished_stages(config, workdir) == []
    _edit(manual, "videos/v2.mp4 2", "videos/v2.mp4 0")
    build.build_video_folder(_config("prov"), manual, out, workers=1, rebuild=True)
    after = provenance.dataset_fingerprint(config)
    assert after != before
    with pytest.raises(provenance.StaleWorkdirError) as failure:
        provenance.check_finished_stages(config, workdir)
    head = str(failure.value).splitlines()[0]
    assert head == (
        f"stage 'recognizer' in {workdir} finished on dataset video_folder/prov with fingerprint "
        f"{before}; it has fingerprint {after} now (rebuilt or changed since):"
    )
    # A record from before fingerprints were recorded still resumes.
    record = provenance.read_record(workdir, "recognizer")
    del record[provenance.DATASET_FIELD]
    provenance.record_path(workdir, "recognizer").write_text(json.dumps(record))
    assert provenance.check_finished_stages(config, workdir) == []


class _Evil:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204 - the attack itself
        return (os.system, (f"touch {self.marker}",))


def test_planted_cache_files_run_no_code_and_are_counted(tmp_path, caplog):
    manual, out = _manual(tmp_path / "m"), str(tmp_path / "out")
    first = build.build_video_folder(_config("evil"), manual, out, workers=1, keep_cache=True)
    shutil.rmtree(first.data_dir)
    (cache,) = glob.glob(os.path.join(out, "video_folder", "evil", "build_cache-*", "train"))
    marker = tmp_path / "pwned"
    # Where builds before this one kept v0 (a pickle), and a frames file replaced by a pickle.
    old_name = hashlib.sha1(b"videos/v0.mp4").hexdigest() + ".pkl"
    with open(os.path.join(cache, old_name), "wb") as f:
        pickle.dump(("videos/v0.mp4", _Evil(str(marker))), f)
    frames = sorted(glob.glob(os.path.join(cache, "*.frames.npz")))
    for path in frames[:1]:
        with open(path, "wb") as f:
            evil = np.array([_Evil(str(marker))], dtype=object)
            np.savez(f, data=evil, ends=np.ones(1, np.int64))
    with caplog.at_level(logging.WARNING):
        build.build_video_folder(_config("evil"), manual, out, workers=1)
    assert not marker.exists()
    assert len(frames) == 3
    assert (
        f"video_folder train: ignored 2 files in {cache}, never loaded "
        "{'not a frames file': 1, 'unreadable (ValueError)': 1}; their videos are decoded again"
    ) in _messages(caplog)
    assert _labels(out, "evil") == {"videos/v0.mp4": 0, "videos/v1.mp4": 1, "videos/v2.mp4": 2}
