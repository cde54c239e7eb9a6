"""Flax Linen models: backbones, the NSNet sampler, the recognizer and their composition."""

from nsnet_jax.models.registry import BACKBONES, count_params, create_backbone, normalize_images

__all__ = ["BACKBONES", "count_params", "create_backbone", "normalize_images"]
