"""Training speed: the trainer's own step (train/step.py) and optimizer at a config's shapes."""

from __future__ import annotations

from typing import Any

import jax

from nsnet_jax.bench.common import Emit, synthetic_train_batch
from nsnet_jax.costs.timing import rounded, time_call
from nsnet_jax.models.nsnet import NSNet
from nsnet_jax.train.step import build_stage_optimizer, create_train_state, make_train_step


def bench_train_step(
    model: NSNet, variables: Any, config: Any, batch: int, repeats: int, stage: str, emit: Emit
) -> None:
    """videos/s of the stage's jitted, donated train step; the state is threaded through."""
    device = jax.devices()[0]
    data = jax.device_put(synthetic_train_batch(config, stage, batch, seed=1), device)
    tx, total = build_stage_optimizer(config, stage, variables["params"], steps_per_epoch=1000)
    state = jax.jit(lambda v: create_train_state(v, tx))(variables)
    step = jax.jit(make_train_step(config, model, stage, tx, total), donate_argnums=0)
    rng = jax.random.key(0)
    holder = {"state": state}

    def call():
        holder["state"], metrics = step(holder["state"], data, rng)
        return metrics["loss"]

    timing = time_call(call, repeats, warmup=1)
    train_config = config.recognizer_training if stage == "recognizer" else config.sampler_training
    emit(
        "train_step_examples_per_s",
        round(batch / timing["median_s"], 4),
        "videos/s",
        train_step=stage,
        optimizer=train_config.optimizer,
        inputs={k: list(v.shape) for k, v in data.items()},
        **rounded(timing),
    )
