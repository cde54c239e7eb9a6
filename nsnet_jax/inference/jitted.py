"""Jitted inference for NSNet and for the baselines that share its recognizer.

NSNet: sampler on T low-res frames -> top-K -> recognizer on K frames, one `jax.jit`.
Baselines choose the K frames differently: uniform-K, random-K, oracle-K (from ground-truth
evidence), and all-T (the recognizer on every candidate). All keep their inputs' batch sharding.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh

from nsnet_jax.contracts import check_frames
from nsnet_jax.models.nsnet import NSNet
from nsnet_jax.models.selection import gather_frames
from nsnet_jax.sharding import batch_sharding


def _batch_sharding(mesh: Mesh | None):
    return None if mesh is None else batch_sharding(mesh)


def sampler_scores(model: NSNet) -> Callable[[Any, jax.Array], jax.Array]:
    """f(variables, sampler_frames [B,T,h,w,3]) -> fused scores [B,T], not jitted (to compose)."""

    def scores(variables, sampler_frames):
        return model.apply(variables, sampler_frames, method=NSNet.sample)["scores"]

    return scores


def make_scores_fn(model: NSNet, mesh: Mesh | None = None) -> Callable[..., jax.Array]:
    """Jitted `sampler_scores`; with a mesh, the scores keep the batch sharding."""
    return jax.jit(sampler_scores(model), out_shardings=_batch_sharding(mesh))


def make_inference_fn(model: NSNet, mesh: Mesh | None = None) -> Callable[..., dict[str, Any]]:
    """f(variables, sampler_frames [B,T,h,w,3], frames [B,T,H,W,3]) -> logits, indices, scores.

    Inputs are checked in Python first; with a mesh, outputs are sharded over its `data` axis.
    """
    sharding = _batch_sharding(mesh)

    @jax.jit
    def infer(variables, sampler_frames, frames):
        out = model.apply(variables, sampler_frames, frames)
        if sharding is not None:
            out = jax.lax.with_sharding_constraint(out, sharding)
        return out

    def checked(variables, sampler_frames, frames):
        check_frames("sampler_frames", sampler_frames)
        check_frames("frames", frames, num_frames=sampler_frames.shape[1])
        if sampler_frames.shape[0] != frames.shape[0]:
            raise ValueError(
                f"sampler_frames and frames disagree on the batch size: "
                f"{sampler_frames.shape[0]} vs {frames.shape[0]}"
            )
        if model.num_select > sampler_frames.shape[1]:
            raise ValueError(
                f"config.model.num_select={model.num_select} exceeds the "
                f"{sampler_frames.shape[1]} candidate frames of the input"
            )
        return infer(variables, sampler_frames, frames)

    checked.jitted = infer  # the raw jitted function, for cost analysis and lowering
    return checked


def make_recognize_fn(model: NSNet, mesh: Mesh | None = None) -> Callable[..., jax.Array]:
    """f(variables, frames [B,T,H,W,3], indices [B,K]) -> video logits; the baselines' path."""
    sharding = _batch_sharding(mesh)

    @jax.jit
    def recognize(variables, frames, indices):
        chosen = gather_frames(frames, indices)
        logits = model.apply(variables, chosen, method=NSNet.recognize)["logits"]
        if sharding is not None:
            logits = jax.lax.with_sharding_constraint(logits, sharding)
        return logits

    return recognize


def uniform_indices(batch: int, num_frames: int, k: int) -> np.ndarray:
    """The centres of K equal segments (TSN's test-time sampling), [B, K]."""
    idx = np.floor((np.arange(k) + 0.5) * num_frames / k).astype(np.int32)
    return np.broadcast_to(idx, (batch, k)).copy()


def random_indices(rng: np.random.Generator, batch: int, num_frames: int, k: int) -> np.ndarray:
    """K distinct frames drawn uniformly per video, in temporal order, [B, K]."""
    idx = np.stack([rng.choice(num_frames, size=k, replace=False) for _ in range(batch)])
    return np.sort(idx, axis=1).astype(np.int32)


def oracle_indices(evidence: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """K frames with as many ground-truth evidence frames as possible, the rest at random."""
    evidence = np.asarray(evidence, bool)
    noise = rng.random(evidence.shape)
    order = np.argsort(-(evidence.astype(np.float64) * 2.0 + noise), axis=1, kind="stable")
    return np.sort(order[:, :k], axis=1).astype(np.int32)


def make_all_frames_fn(model: NSNet, mesh: Mesh | None = None) -> Callable[..., jax.Array]:
    """f(variables, frames [B,T,H,W,3]) -> video logits: the all-T baseline."""
    sharding = _batch_sharding(mesh)

    @jax.jit
    def all_frames(variables, frames):
        logits = model.apply(variables, frames, method=NSNet.recognize)["logits"]
        if sharding is not None:
            logits = jax.lax.with_sharding_constraint(logits, sharding)
        return logits

    return all_frames
