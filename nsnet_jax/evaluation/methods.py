"""The frame-selection methods evaluation compares: name -> how it picks K of T frames.

Each method is a function of the host-local sampler scores [B, T], the ground-truth evidence mask
[B, T] (all False where a dataset has none), a numpy Generator, K and the sampler-view frames
[B, T, h, w, 3] (for samplers that look at pixels), returning indices [B, K] in temporal order.
Adding a baseline is one entry in `METHODS`; `extra_gmacs` is what its own selection costs.
A new method must not draw from the Generator unless it comes last: random and oracle share it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax.numpy as jnp
import numpy as np

from nsnet_jax.evaluation.samplers import motion_gmacs, motion_guided_indices
from nsnet_jax.inference.jitted import oracle_indices, random_indices, uniform_indices
from nsnet_jax.models.selection import topk_indices

SelectFn = Callable[[np.ndarray, np.ndarray, np.random.Generator, int, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Method:
    select: SelectFn
    baseline: bool  # reported only with config.eval.baselines
    needs_evidence: bool = False  # reported only where the dataset has ground-truth evidence
    uses_sampler: bool = False  # its speed includes the sampler on all T frames
    extra_gmacs: Callable[[Any], float] | None = None  # its own selection's cost, from the config
    # a method with a fitted part: bind(config, model, variables) -> its select function
    bind: Callable[[Any, Any, Any], SelectFn] | None = None
    switch: str | None = None  # reported only where config.eval.<switch> > 0


def _nsnet(scores, evidence, rng, k, sampler_frames=None):
    return np.asarray(topk_indices(jnp.asarray(scores), k))


def _uniform(scores, evidence, rng, k, sampler_frames=None):
    return uniform_indices(scores.shape[0], scores.shape[1], k)


def _random(scores, evidence, rng, k, sampler_frames=None):
    return random_indices(rng, scores.shape[0], scores.shape[1], k)


def _oracle(scores, evidence, rng, k, sampler_frames=None):
    return oracle_indices(evidence, k, rng)


def _unbound(scores, evidence, rng, k, sampler_frames=None):
    raise RuntimeError("this method has a fitted part: use select_functions(...)")


def _bind_scsampler(config, model, variables):
    from nsnet_jax.evaluation import scsampler

    return scsampler.make_select(config, model, variables)


def _motion(scores, evidence, rng, k, sampler_frames=None):
    return motion_guided_indices(sampler_frames, k)


METHODS: dict[str, Method] = {
    "nsnet": Method(_nsnet, baseline=False, uses_sampler=True),
    "uniform": Method(_uniform, baseline=True),
    "random": Method(_random, baseline=True),
    "oracle": Method(_oracle, baseline=True, needs_evidence=True),
    "mgsampler": Method(_motion, baseline=True, extra_gmacs=motion_gmacs, switch="mgsampler"),
    "scsampler": Method(
        _unbound, baseline=True, uses_sampler=True, bind=_bind_scsampler, switch="scsampler_videos"
    ),
}


def active_methods(baselines: bool, has_evidence: bool, config: Any = None) -> list[str]:
    """The methods an evaluation reports, in table order."""

    def switched_on(m: Method) -> bool:
        return m.switch is None or (config is not None and config.eval.get(m.switch, 0) > 0)

    return [
        name
        for name, m in METHODS.items()
        if (baselines or not m.baseline)
        and (has_evidence or not m.needs_evidence)
        and switched_on(m)
    ]


def select_functions(methods: list[str], config: Any, model: Any, variables: Any) -> dict:
    """Each method's select function for this evaluation (fitted parts fitted once, here)."""
    return {
        m: METHODS[m].bind(config, model, variables) if METHODS[m].bind else METHODS[m].select
        for m in methods
    }
