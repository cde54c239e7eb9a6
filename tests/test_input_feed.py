"""Fast input: the DCT draft scale, the sampler cache, the GPU decoder's CPU fallback."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from nsnet_jax.input_pipeline import decode


def _jpeg(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=92)
    return buf.getvalue()


def _frame(width: int, height: int, seed: int = 0) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    shift = 7 * seed
    return np.stack([(x + shift) % 256, y % 256, (x + y + shift) % 256], -1).astype(np.uint8)


def test_draft_scale_follows_the_crop_not_the_frame():
    # A 341x256 frame (4:3 at short side 256): the centre square drafts at 1/2 for 128 px, 1/4
    # for 64 px; a crop narrower than 2x the output decodes at full scale (never upsampled).
    center = decode.center_box(341, 256)
    assert decode.draft_scale(center, 128) == 2
    assert decode.draft_scale(center, 64) == 4
    assert decode.draft_scale(center, 224) == 1
    assert decode.draft_scale((10.0, 20.0, 210.0, 220.0), 128) == 1


def test_draft_on_odd_width_frame_matches_full_decode_closely():
    enc = _jpeg(_frame(341, 256))
    fast = decode.decode_frames([enc], 128).astype(float)
    slow = decode.decode_frames([enc], 128, draft=False).astype(float)
    assert np.abs(fast - slow).mean() < 3.0
    assert not np.array_equal(fast, slow)  # the draft really applied


def _batches(data_dir, split, *, train, n=2, batch=4, **overrides):
    from nsnet_jax.input_pipeline import pipeline
    from tests.helpers import data_config

    it, _ = pipeline.create_dataset(
        data_config(data_dir, num_threads=1, **overrides),
        split,
        train=train,
        global_batch_size=batch,
        seed=3,
        process_index=0,
        process_count=1,
        views=("sampler",),
    )
    return [next(it) for _ in range(n)]


def test_sampler_cache_is_bit_exact_with_decoding_and_augments(tiny_fashion_dir, tmp_path):
    from nsnet_jax.input_pipeline import sampler_cache
    from tests.helpers import data_config

    cfg = data_config(tiny_fashion_dir)
    for split in ("train", "test"):
        index = sampler_cache.write_cache(
            cfg.name, split, cfg.sampler_size, str(tmp_path), data_dir=tiny_fashion_dir
        )
        assert index["complete"] and index["num_frames"] == cfg.num_frames
    cached = dict(sampler_cache_dir=str(tmp_path))
    # Eval (centre crop, padded last batch) and train without augmentation: identical bytes.
    for split, train, extra in (("test", False, {}), ("train", True, dict(augment=False))):
        decoded = _batches(tiny_fashion_dir, split, train=train, n=4, **extra)
        from_cache = _batches(tiny_fashion_dir, split, train=train, n=4, **extra, **cached)
        for a, b in zip(decoded, from_cache, strict=True):
            assert sorted(a) == sorted(b)
            for key in a:
                np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    # Train with augmentation: deterministic per (seed, position), and really cropped.
    plain = _batches(tiny_fashion_dir, "train", train=True, augment=False, **cached)
    aug1 = _batches(tiny_fashion_dir, "train", train=True, **cached)
    aug2 = _batches(tiny_fashion_dir, "train", train=True, **cached)
    for p, a1, a2 in zip(plain, aug1, aug2, strict=True):
        np.testing.assert_array_equal(a1["sampler_frames"], a2["sampler_frames"])
        np.testing.assert_array_equal(p["index"], a1["index"])
        assert a1["sampler_frames"].shape == p["sampler_frames"].shape
        assert not np.array_equal(a1["sampler_frames"], p["sampler_frames"])


def test_jpeg_sampler_cache_feeds_the_same_views_within_jpeg_rounding(tiny_fashion_dir, tmp_path):
    from nsnet_jax.input_pipeline import sampler_cache
    from tests.helpers import data_config

    cfg = data_config(tiny_fashion_dir)
    raw, jpeg = tmp_path / "uint8", tmp_path / "jpeg"
    kw = dict(data_dir=tiny_fashion_dir)
    plain = sampler_cache.write_cache(cfg.name, "test", cfg.sampler_size, str(raw), **kw)
    index = sampler_cache.write_cache(
        cfg.name, "test", cfg.sampler_size, str(jpeg), fmt="jpeg", jpeg_quality=95, **kw
    )
    assert index["format"] == "jpeg" and index["video_ids"] == plain["video_ids"]
    cache = sampler_cache.SamplerCache(str(jpeg), cfg.name, "test", cfg.sampler_size)
    jpegs = cache.encoded(1)
    assert len(jpegs) == cfg.num_frames
    assert decode.image_size(jpegs[0]) == (cfg.sampler_size, cfg.sampler_size)
    exact = _batches(tiny_fashion_dir, "test", train=False, sampler_cache_dir=str(raw))
    stored = _batches(tiny_fashion_dir, "test", train=False, sampler_cache_dir=str(jpeg))
    for a, b in zip(exact, stored, strict=True):
        np.testing.assert_array_equal(a["label"], b["label"])
        diff = np.abs(a["sampler_frames"].astype(float) - b["sampler_frames"])
        assert 0 < diff.mean() < 3.0  # JPEG's rounding, nothing else
    augmented = cache.augmented(0, np.random.default_rng(0), 0.25)
    assert augmented.shape == cache.video(0).shape
    assert not np.array_equal(augmented, cache.video(0))
    with pytest.raises(ValueError, match="--format=jpeg"):
        sampler_cache.SamplerCache(str(raw), cfg.name, "test", cfg.sampler_size).encoded(0)
    # rewriting in the other format leaves one format behind; a cut data file is refused
    sampler_cache.write_cache(cfg.name, "test", cfg.sampler_size, str(jpeg), **kw)
    npy, _ = sampler_cache.cache_paths(str(jpeg), cfg.name, "test", cfg.sampler_size)
    assert sorted(p.name for p in (jpeg / cfg.name.replace("/", "__")).iterdir()) == [
        f"test-{cfg.sampler_size}.json",
        f"test-{cfg.sampler_size}.npy",
    ] and npy.endswith(".npy")
    sampler_cache.write_cache(cfg.name, "test", cfg.sampler_size, str(jpeg), fmt="jpeg", **kw)
    data, _ = sampler_cache.cache_paths(str(jpeg), cfg.name, "test", cfg.sampler_size, "jpeg")
    with open(data, "r+b") as f:
        f.truncate(100)
    with pytest.raises(ValueError, match="truncated or damaged"):
        sampler_cache.SamplerCache(str(jpeg), cfg.name, "test", cfg.sampler_size)


def test_sampler_cache_augmentation_in_step_matches_host(tiny_fashion_dir, tmp_path):
    import jax.numpy as jnp

    from nsnet_jax.augment import augment_in_step
    from nsnet_jax.input_pipeline import sampler_cache
    from tests.helpers import data_config

    cfg = data_config(tiny_fashion_dir)
    sampler_cache.write_cache(
        cfg.name, "train", cfg.sampler_size, str(tmp_path), data_dir=tiny_fashion_dir
    )
    cached = dict(sampler_cache_dir=str(tmp_path))
    host = _batches(tiny_fashion_dir, "train", train=True, **cached)
    plain = _batches(tiny_fashion_dir, "train", train=True, augment=False, **cached)
    step = _batches(tiny_fashion_dir, "train", train=True, sampler_cache_augment="step", **cached)
    for h, p, s in zip(host, plain, step, strict=True):
        np.testing.assert_array_equal(s["sampler_frames"], p["sampler_frames"])  # unaugmented
        assert s["sampler_box"].shape == (4, 4) and s["sampler_flip"].shape == (4,)
        moved = augment_in_step(
            jnp.asarray(s["sampler_frames"]), s["sampler_box"], s["sampler_flip"]
        )
        assert np.abs(np.asarray(moved, float) - h["sampler_frames"]).mean() < 3.0


def test_sampler_cache_missing_or_mismatched_says_how_to_write_it(tiny_fashion_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m nsnet_jax.input_pipeline.sampler_cache"):
        _batches(tiny_fashion_dir, "test", train=False, sampler_cache_dir=str(tmp_path))


def test_crop_resize_full_box_is_identity_and_flip_mirrors():
    from nsnet_jax.input_pipeline import sampler_cache

    frames = np.stack([_frame(16, 16, seed) for seed in range(3)])
    same = sampler_cache.crop_resize(frames, (0.0, 0.0, 16.0, 16.0), 16, flip=False)
    np.testing.assert_array_equal(same, frames)
    flipped = sampler_cache.crop_resize(frames, (2.0, 3.0, 12.0, 13.0), 16, flip=True)
    unflipped = sampler_cache.crop_resize(frames, (2.0, 3.0, 12.0, 13.0), 16, flip=False)
    np.testing.assert_array_equal(flipped, unflipped[:, :, ::-1])


def test_jax_crop_resize_matches_pil_and_flips():
    import jax.numpy as jnp

    from nsnet_jax.input_pipeline import gpu_decode

    frames = np.stack([_frame(96, 64, seed) for seed in range(2)])
    boxes = [(10.5, 4.0, 70.5, 60.0), (0.0, 0.0, 96.0, 64.0)]
    got = np.asarray(
        gpu_decode.crop_resize(
            jnp.asarray(frames), jnp.asarray(boxes), jnp.asarray([False, True]), 32
        )
    )
    for i in range(2):
        want = np.asarray(Image.fromarray(frames[i]).resize((32, 32), Image.BILINEAR, box=boxes[i]))
        want = want[:, ::-1] if i == 1 else want
        assert np.abs(got[i].astype(float) - want).mean() < 2.0


def test_gpu_decoder_falls_back_to_host_on_cpu():
    from nsnet_jax.input_pipeline import gpu_decode

    ok, why = gpu_decode.gpu_decode_status()
    assert not ok and "cpu" in why
    assert isinstance(gpu_decode.make_decoder("auto"), gpu_decode.HostDecoder)
    with pytest.raises(RuntimeError, match="kind='host'"):
        gpu_decode.make_decoder("gpu")


def _pil_gpu_decoder(torch=None):
    """The GPU decoder's batching with PIL standing in for nvJPEG, so it runs on CPU. With `torch`,
    frames are torch CHW tensors permuted to HWC and reach JAX by DLPack, as on the GPU."""
    import jax.numpy as jnp

    from nsnet_jax.input_pipeline import gpu_decode

    class Fake(gpu_decode.GpuDecoder):
        def __init__(self):
            self._torch, self._recent, self.decoded_frames = torch, (), 0

        def _decode_images(self, frames):
            self.decoded_frames += len(frames)
            images = [np.asarray(Image.open(io.BytesIO(f)).convert("RGB")) for f in frames]
            if torch is None:
                return images
            return [
                torch.from_numpy(im.transpose(2, 0, 1).copy()).permute(1, 2, 0) for im in images
            ]

        def _stack_to_jax(self, images):
            if torch is None:
                return jnp.asarray(np.stack(images))
            return super()._stack_to_jax(images)

    return Fake()


@pytest.mark.parametrize("frames_in", ["numpy", "torch_dlpack"])
def test_gpu_decoder_views_match_host_and_decode_each_frame_once(frames_in):
    from nsnet_jax.input_pipeline import gpu_decode

    torch = pytest.importorskip("torch") if frames_in == "torch_dlpack" else None

    videos = [
        [_jpeg(_frame(96, 72, s)) for s in range(4)],
        [_jpeg(_frame(80, 64, s)) for s in range(4, 8)],  # another frame size in the batch
    ]
    boxes = [np.array((8.0, 4.0, 72.0, 68.0), np.float32), None]  # as batch["crop_box"] has it
    flips = [True, False]
    gpu, host = _pil_gpu_decoder(torch), gpu_decode.HostDecoder()
    for size, indices in ((16, None), (32, np.array([[3, 1], [0, 2]]))):
        kw = dict(indices=indices, boxes=boxes, flips=flips)
        got = np.asarray(gpu.view(videos, size, **kw)).astype(float)
        want = host.view(videos, size, **kw).astype(float)
        assert got.shape == want.shape == (2, 4 if indices is None else 2, size, size, 3)
        assert np.abs(got - want).mean() < 3.0
    assert gpu.decoded_frames == 8  # the K-frame view reused the batch decoded for the sampler


def test_gpu_decoder_keeps_three_batches_and_decodes_only_k_after_a_stored_view():
    from nsnet_jax.input_pipeline import gpu_decode

    batches = [[[_jpeg(_frame(96, 72, 4 * b + s)) for s in range(4)] for _ in range(2)]
               for b in range(4)]  # fmt: skip
    k = np.array([[3, 1], [0, 2]])
    gpu, host = _pil_gpu_decoder(), gpu_decode.HostDecoder()
    # run_overlapped's order: batch 2's sampler view may be decoded before batch 0's K frames
    for b in range(3):
        gpu.view(batches[b], 16)
    got = np.asarray(gpu.view(batches[0], 32, indices=k)).astype(float)
    assert gpu.decoded_frames == 24  # batch 0's K frames came from its first decode
    assert np.abs(got - host.view(batches[0], 32, indices=k)).mean() < 3.0
    # a stored sampler view: T small JPEGs, then only the K chosen full-size frames
    stored = [decode.encode_view(v, 16) for v in batches[3]]
    low = np.asarray(gpu.view(stored, 16)).astype(float)
    assert np.abs(low - host.view(batches[3], 16)).mean() < 4.0
    gpu.view(batches[3], 32, indices=k)
    assert gpu.decoded_frames == 24 + 8 + 4
    # a corrupt frame among the K is named by its index in the video, not in the selection
    broken = [list(v) for v in batches[3]]
    broken[1][2] = b"not a jpeg"
    with pytest.raises(decode.CorruptFrameError, match="Example 1: frame 2 "):
        gpu.view(broken, 32, indices=k)


def test_gpu_check_script_reports_the_fallback_and_input_rates_on_cpu(tmp_path):
    import importlib.util
    import json
    import pathlib

    path = pathlib.Path(__file__).parents[1] / "launch" / "gpu_check.py"
    spec = importlib.util.spec_from_file_location("gpu_check", path)
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    assert gpu_check.main([f"--out={tmp_path}", "--tiny", "--dtypes="]) == 0  # no models: fast
    lines = [json.loads(x) for x in (tmp_path / "gpu_check.jsonl").read_text().splitlines()]
    checks = [x["check"] for x in lines]
    assert checks[0] == "env" and checks[-1] == "done" and "error" not in checks
    assert lines[0]["gpu_decode"] is False and "not 'gpu'" in lines[0]["gpu_decode_why"]
    inputs = [x for x in lines if x["check"] == "input"]
    views = {"sampler_all_t", "recognizer_k", "recognizer_all_t", "sampler_stored_all_t"}
    assert {x["view"] for x in inputs} == views | {"decode_aware", "decode_aware_stored"}
    stored = next(x for x in lines if x["check"] == "stored_sampler_view")
    assert stored["size"] == 32 and 0 < stored["mean_jpeg_kib"]
    assert all(x["videos_per_s"] > 0 and x["decoder"].startswith("host") for x in inputs)
    assert "augment_in_step" in checks


def test_tsn_indices_pick_one_frame_per_segment():
    from nsnet_jax.input_pipeline.pipeline import tsn_indices

    rng = np.random.default_rng(0)
    for t, n in ((16, 8), (16, 6), (6, 3)):
        idx = tsn_indices(rng, t, n)
        starts = np.floor(np.arange(n) * t / n).astype(int)
        ends = np.floor((np.arange(n) + 1) * t / n).astype(int)
        assert np.all((starts <= idx) & (idx < ends))
    np.testing.assert_array_equal(tsn_indices(rng, 6, 0), np.arange(6))
    np.testing.assert_array_equal(tsn_indices(rng, 6, 6), np.arange(6))


def test_recognizer_stage_decodes_only_its_tsn_frames(tiny_fashion_dir):
    from nsnet_jax.input_pipeline import pipeline
    from tests.helpers import data_config

    def batches(**overrides):
        it, _ = pipeline.create_dataset(
            data_config(tiny_fashion_dir, num_threads=1, **overrides),
            "train",
            train=True,
            global_batch_size=4,
            seed=5,
            process_index=0,
            process_count=1,
            views=("recognizer",),
        )
        return [next(it) for _ in range(2)]

    full, picked = batches(), batches(recognizer_train_frames=3)
    for step, (f, p) in enumerate(zip(full, picked, strict=True)):
        assert p["frames"].shape == (4, 3) + f["frames"].shape[2:]
        for row in range(4):
            rng = np.random.default_rng([5, 2, step * 4 + row])  # the loader's stream
            idx = pipeline.tsn_indices(rng, f["frames"].shape[1], 3)
            np.testing.assert_array_equal(p["frames"][row], f["frames"][row][idx])  # same crop
