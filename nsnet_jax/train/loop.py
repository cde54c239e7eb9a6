"""The training loop shared by stages 1 (recognizer) and 3 (sampler).

Optimizer, restore from the latest checkpoint, input from the restored data position, jitted
steps, checkpoints on a cadence and on preemption, and the stage's `final` variables; a non-finite
loss or a checkpoint of another model stops the loop with a way out.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterator
from typing import Any

import jax
import numpy as np

from nsnet_jax.config_fields import Settings
from nsnet_jax.input_pipeline import pipeline
from nsnet_jax.models.nsnet import NSNet
from nsnet_jax.sharding import batch_sharding, replicated
from nsnet_jax.train import checkpointing, provenance
from nsnet_jax.train.init import final_dir
from nsnet_jax.train.progress import Progress
from nsnet_jax.train.step import (
    TrainState,
    build_stage_optimizer,
    create_train_state,
    input_views,
    make_train_step,
    stage_seed,
)

log = logging.getLogger("nsnet_jax")


class NonFiniteLossError(FloatingPointError):
    pass


# final parts: the sub-networks a trained stage leaves in `<stage>/final`; seed offsets keep the
# stages' data orders and step rngs apart
_FINAL_PARTS = {"recognizer": ("recognizer",), "sampler": ("sampler", "recognizer")}
_SEED_OFFSETS = {"recognizer": 1, "sampler": 3}


def train_stage(
    name: str,
    config: Any,
    workdir: str,
    model: NSNet,
    mesh,
    writer,
    variables: dict,
    *,
    settings: Settings,
    add_host_keys: Callable[[dict], dict] | None = None,
    batches_from: Callable[[int, int], tuple[Iterator[dict], int]] | None = None,
) -> dict[str, Any]:
    """Optimizer, checkpoint restore, input at the restored position, then the step loop.

    batches_from(start_step, seed) -> (batches, steps_per_epoch) replaces the decoding input;
    `settings` (the runner's parsed config fields) gives the lr multipliers.
    """
    ckpt_dir = os.path.join(workdir, name, "checkpoints")
    mngr = checkpointing.manager(ckpt_dir, max_to_keep=config.keep_checkpoints)
    start = mngr.latest_step() or 0  # checkpoints are named by step = data position
    seed = stage_seed(config, name) + _SEED_OFFSETS[name]
    if batches_from is None:
        batches, meta = pipeline.create_dataset(
            config.data, config.data.train_split, train=True,
            global_batch_size=config.batch_size, seed=seed, start_step=start,
            views=input_views(config, name),
        )  # fmt: skip
        steps_per_epoch = meta.steps_per_epoch
    else:
        batches, steps_per_epoch = batches_from(start, seed)
    multipliers = settings.lr_multipliers[name]
    tx, total = build_stage_optimizer(
        config, name, variables["params"], steps_per_epoch, multipliers
    )
    rep = replicated(mesh)
    state = jax.jit(lambda v: create_train_state(v, tx), out_shardings=rep)(variables)
    if start:
        state = _resume(config, workdir, name, mngr, ckpt_dir, start, state)
    step_fn = make_train_step(config, model, name, tx, total_steps=total)
    jit_step = jax.jit(step_fn, donate_argnums=0, out_shardings=(rep, rep))
    data_sharding = batch_sharding(mesh)
    base_rng = jax.random.key(seed + 1000)
    progress = Progress(name, start, total)
    metrics_host: dict[str, float] = {}
    with checkpointing.PreemptionFlag() as preemption:
        for step in range(start, total):
            host_batch = next(batches)
            if add_host_keys is not None:
                host_batch = add_host_keys(host_batch)
            batch = pipeline.to_global(host_batch, data_sharding)
            state, metrics = jit_step(state, batch, jax.random.fold_in(base_rng, step))
            metrics_host = {k: float(v) for k, v in jax.device_get(metrics).items()}
            if not math.isfinite(metrics_host["loss"]):
                mngr.wait_until_finished()
                raise NonFiniteLossError(
                    _non_finite_advice(
                        config, name, step + 1, metrics_host, state, mngr.latest_step(), ckpt_dir
                    )
                )
            done = step + 1
            progress.update(done, metrics_host)
            if done % config.log_every_steps == 0 or done == total:
                writer.write_scalars(done, {f"{name}/{k}": v for k, v in metrics_host.items()})
                progress.log(done, metrics_host)
            if preemption.agreed():
                checkpointing.save(mngr, done, state.to_dict(), {"data_position": done}, force=True)
                checkpointing.wait(mngr)
                log.warning("%s: preempted; checkpoint saved at step %d", name, done)
                return {"preempted": True, "step": done}
            if done % config.checkpoint_every_steps == 0 and done < total:
                checkpointing.save(mngr, done, state.to_dict(), {"data_position": done})
    if mngr.latest_step() != total:
        checkpointing.save(mngr, total, state.to_dict(), {"data_position": total}, force=True)
    checkpointing.finish(mngr)
    parts = _FINAL_PARTS[name]
    final = {c: {p: getattr(state, c)[p] for p in parts} for c in ("params", "batch_stats")}
    checkpointing.save_variables(final_dir(workdir, name), final, resume_dir=ckpt_dir)
    return {"steps": total, "steps_per_epoch": steps_per_epoch, **metrics_host}


def _resume(config, workdir, name, mngr, ckpt_dir, start, state) -> TrainState:
    """The state saved at step `start`, checked against the model and the data position."""
    _check_checkpoint_matches_model(config, workdir, name, mngr, start, state)
    restored, ckpt_meta = checkpointing.restore(mngr, state.to_dict(), step=start)
    state = TrainState.from_dict(restored)
    log.info("%s: resumed from step %d (%s)", name, int(state.step), ckpt_meta)
    if int(state.step) != start or ckpt_meta.get("data_position", start) != start:
        raise RuntimeError(
            f"{ckpt_dir}/{start} holds step {int(state.step)} with data position "
            f"{ckpt_meta.get('data_position')}; the checkpoint directory is inconsistent"
        )
    return state


def _check_checkpoint_matches_model(config, workdir, name, mngr, step, state) -> None:
    """A half-finished stage resumed with another model fails naming the parameter, both shapes
    and the config fields that changed since the stage started."""
    mismatches = checkpointing.shape_mismatches(mngr, step, state.to_dict())
    if not mismatches:
        return
    lines = [f"  {p}: {a} in the checkpoint, {b} in the model now" for p, a, b in mismatches[:8]]
    if len(mismatches) > 8:
        lines.append(f"  ... and {len(mismatches) - 8} more")
    recorded = provenance.read_record(workdir, name)
    changed = (
        provenance.differences(recorded, provenance.stage_fields(config, name)) if recorded else []
    )
    fields = provenance.format_differences(changed) if changed else "  (no record of the config)"
    raise checkpointing.CheckpointMismatchError(
        f"{name}: the checkpoint of step {step} in {mngr.directory} holds a different model:\n"
        + "\n".join(lines)
        + f"\nConfig fields changed since this stage started:\n{fields}\n"
        f"Rerun with the recorded values to resume, or start the stage anew with the new model "
        f"(mv {mngr.directory} {mngr.directory}.old) or use a new --workdir."
    )


def _non_finite_advice(config, name, step, metrics, state, latest, ckpt_dir) -> str:
    """The stop message after a non-finite loss, with a way out that works.

    Parameters usually blow up steps before the loss turns non-finite, so the latest checkpoint can
    hold diverged weights and resuming from it fails again: restart the stage from its beginning.
    """
    field = "recognizer_training" if name == "recognizer" else "sampler_training"
    lr = config[field].learning_rate
    largest = max(float(np.max(np.abs(np.asarray(x)))) for x in jax.tree.leaves(state.params))
    saved = (
        f"the checkpoints in {ckpt_dir} (latest step {latest}) may hold diverged weights too, so "
        "resuming from them fails again"
        if latest
        else "no checkpoint was saved yet"
    )
    return (
        f"{name}: loss is {metrics['loss']} at step {step} (largest |parameter| now "
        f"{largest:.3g}); stopping. {saved[0].upper()}{saved[1:]}. To restart this stage from its "
        f"first step with a lower learning rate (or with --config.{field}.grad_clip=1.0):\n"
        f"  mv {ckpt_dir} {ckpt_dir}.diverged\n"
        f"  <the same command> --config.{field}.learning_rate={lr / 10:g}"
    )
