"""Inference: the jitted NSNet and baseline functions, and the decode-aware path from JPEG."""

from nsnet_jax.inference.jitted import (
    make_all_frames_fn,
    make_inference_fn,
    make_recognize_fn,
    make_scores_fn,
    oracle_indices,
    random_indices,
    sampler_scores,
    uniform_indices,
)

__all__ = [
    "make_all_frames_fn",
    "make_inference_fn",
    "make_recognize_fn",
    "make_scores_fn",
    "oracle_indices",
    "random_indices",
    "sampler_scores",
    "uniform_indices",
]
