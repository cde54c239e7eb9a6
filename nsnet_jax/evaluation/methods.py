"""The frame-selection methods evaluation compares: name -> how it picks K of T frames.

Each method is a function of the host-local sampler scores [B, T], the ground-truth evidence mask
[B, T] (all False where a dataset has none), a numpy Generator and K, returning indices [B, K] in
temporal order. Adding a baseline is one entry in `METHODS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

from nsnet_jax.inference.jitted import oracle_indices, random_indices, uniform_indices
from nsnet_jax.models.selection import topk_indices

SelectFn = Callable[[np.ndarray, np.ndarray, np.random.Generator, int], np.ndarray]


@dataclass(frozen=True)
class Method:
    select: SelectFn
    baseline: bool  # reported only with config.eval.baselines
    needs_evidence: bool = False  # reported only where the dataset has ground-truth evidence
    uses_sampler: bool = False  # its speed includes the sampler on all T frames


def _nsnet(scores, evidence, rng, k):
    return np.asarray(topk_indices(jnp.asarray(scores), k))


def _uniform(scores, evidence, rng, k):
    return uniform_indices(scores.shape[0], scores.shape[1], k)


def _random(scores, evidence, rng, k):
    return random_indices(rng, scores.shape[0], scores.shape[1], k)


def _oracle(scores, evidence, rng, k):
    return oracle_indices(evidence, k, rng)


METHODS: dict[str, Method] = {
    "nsnet": Method(_nsnet, baseline=False, uses_sampler=True),
    "uniform": Method(_uniform, baseline=True),
    "random": Method(_random, baseline=True),
    "oracle": Method(_oracle, baseline=True, needs_evidence=True),
}


def active_methods(baselines: bool, has_evidence: bool) -> list[str]:
    """The methods an evaluation reports, in table order."""
    return [
        name
        for name, m in METHODS.items()
        if (baselines or not m.baseline) and (has_evidence or not m.needs_evidence)
    ]
