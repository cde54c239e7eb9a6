"""Seeds of the sampler stage in one program: `jax.vmap` of the pure train step over a seed axis.

    python -m nsnet_jax.bench.seeds --config=configs/salient_fashion.py [--seeds=3] [--repeats=5]
        [--config.selection.train_mode=sinkhorn]

Each seed has its own parameters, optimizer state, batch (its own data order) and PRNG key, all
stacked on a leading axis; `seeds_train_step` is `make_train_step` vmapped over that axis, so N
seeds' sampler stages can run as one jitted program. Prints one JSON line: the median time of one
step for one seed, of one vmapped step for N seeds, and N x (one seed) for running them in turn.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from absl import flags

from nsnet_jax import cli
from nsnet_jax.models.nsnet import NSNet, init_variables
from nsnet_jax.train.step import TrainState, create_train_state, make_train_step


def stacked_train_states(
    config: Any, model: NSNet, tx: Any, seeds: list[int], variables: Any = None
) -> TrainState:
    """TrainStates for `seeds` (fresh initialisations, or copies of `variables`) on axis 0."""

    def one(seed):
        v = (
            variables
            if variables is not None
            else init_variables(model, config, jax.random.key(seed))
        )
        return create_train_state(dict(v), tx)

    states = [jax.jit(one)(s) for s in seeds]
    return jax.tree.map(lambda *xs: jax.numpy.stack(xs), *states)


def seeds_train_step(
    config: Any, model: NSNet, stage: str, tx: Any, total_steps: int = 0
) -> Callable[[TrainState, dict, jax.Array], tuple[TrainState, dict]]:
    """step(states, batches, keys) -> (states, metrics), every argument with a leading seed axis."""
    return jax.vmap(make_train_step(config, model, stage, tx, total_steps))


def _define_flags() -> None:
    flags.DEFINE_integer("seeds", 3, "Seeds in the vmapped step.")
    flags.DEFINE_integer("repeats", 5, "Timed steps after one warm-up.")


def main(argv: list[str] | None = None) -> None:
    cli.run(_time_seeds, define_extra=_define_flags, argv=argv)


def _time_seeds(config: Any, workdir: str | None, argv: list[str]) -> None:
    """The JSON line: one seed's step, the vmapped step for N seeds, N steps in turn."""
    from nsnet_jax.bench.common import synthetic_train_batch
    from nsnet_jax.costs.timing import time_call
    from nsnet_jax.models.nsnet import build_model
    from nsnet_jax.train.step import build_stage_optimizer

    model = build_model(config)
    n, batch, repeats = flags.FLAGS.seeds, config.batch_size, flags.FLAGS.repeats
    variables = init_variables(model, config, jax.random.key(0))
    tx, total = build_stage_optimizer(config, "sampler", variables["params"], steps_per_epoch=1000)
    data = [synthetic_train_batch(config, "sampler", batch, seed=s) for s in range(n)]
    stacked = {k: np.stack([d[k] for d in data]) for k in data[0]}
    keys = jax.random.split(jax.random.key(1), n)

    one_step = jax.jit(make_train_step(config, model, "sampler", tx, total), donate_argnums=0)
    vmapped = jax.jit(seeds_train_step(config, model, "sampler", tx, total), donate_argnums=0)
    holder = {"one": stacked_train_states(config, model, tx, [0]), "many": None}
    holder["one"] = jax.tree.map(lambda x: x[0], holder["one"])
    holder["many"] = stacked_train_states(config, model, tx, list(range(n)))

    def call_one():
        holder["one"], metrics = one_step(holder["one"], data[0], keys[0])
        return metrics["loss"]

    def call_many():
        holder["many"], metrics = vmapped(holder["many"], stacked, keys)
        return metrics["loss"]

    t_one = time_call(call_one, repeats, warmup=1)
    t_many = time_call(call_many, repeats, warmup=1)
    print(
        json.dumps(
            {
                "seeds": n,
                "batch_per_seed": batch,
                "train_mode": config.selection.train_mode,
                "backend": jax.default_backend(),
                "one_seed_step_s": round(t_one["median_s"], 4),
                "vmapped_step_s": round(t_many["median_s"], 4),
                "sequential_step_s": round(n * t_one["median_s"], 4),
                "vmapped_speedup_over_sequential": round(
                    n * t_one["median_s"] / t_many["median_s"], 3
                ),
                "first_call_s": {
                    "one": round(t_one["first_call_s"], 2),
                    "vmapped": round(t_many["first_call_s"], 2),
                },
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main(sys.argv)
