"""Tiny model configurations so that model and training tests run in seconds on 2 CPU cores."""

from nsnet_jax.config_checks import with_overrides
from nsnet_jax.configs import default


def tiny_config(**overrides):
    """The default config at toy sizes: T=6 frames of 32 px, K=2, small widths."""
    c = default.get_config()
    c.data.num_classes = 5
    c.data.num_frames = 6
    c.data.sampler_size = 32
    c.data.recognizer_size = 32
    c.model.num_select = 2
    c.model.sampler.backbone = "patch_cnn"  # MobileNetV2 has its own tests; this compiles fast
    c.model.sampler.width = 0.25
    c.model.recognizer.backbone = "resnet18"
    c.model.recognizer.width = 0.125
    c.model.recognizer.mlp_dim = 16
    return set_fields(c, **overrides)


def set_fields(config, **overrides):
    """Overrides written as keyword names with `__` for dots: model__num_select=3."""
    return with_overrides(config, {k.replace("__", "."): v for k, v in overrides.items()})
