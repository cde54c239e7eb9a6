"""Runs the stages of one config in one workdir, in order, resuming where a run stopped.

    pretrain       stage 0, optional: backbones as classifiers of labelled stills (train/)
    recognizer     stage 1: the recognizer on T frames, TSN-style (video labels only)
    pseudo_labels  stage 2: the frozen recognizer scores every frame of the training split
    sampler        stage 3: the sampler, trained to suppress non-salient frames
    eval           NSNet at K beside uniform-K, random-K, oracle-K and all-T, same recognizer

The training stages are `train/stages.py`; evaluation is its own package, so the runner that
calls both sits above them, beside the entry points (main, demo, ablate) that call it.
Each stage writes to `workdir/<stage>/` and ends with a `DONE.json` summary; `stage=all` runs the
stages in order and skips the finished ones, so rerunning a command resumes where it stopped.
The same code runs on one CPU device or a multi-host pod: one `data` mesh axis, replicated
parameters, per-process input assembled into global arrays, one jitted step.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from typing import Any

import jax
from etils import epath

from nsnet_jax import config_fields
from nsnet_jax.config_checks import validate_config
from nsnet_jax.config_fields import Settings
from nsnet_jax.evaluation import evaluate
from nsnet_jax.models.nsnet import build_model
from nsnet_jax.sharding import check_global_batch, data_mesh
from nsnet_jax.train import STAGE_ORDER, checkpointing, faults, provenance, run_info
from nsnet_jax.train.init import restore_stage_variables
from nsnet_jax.train.stages import TRAINING_STAGES

log = logging.getLogger("nsnet_jax")


def train_and_evaluate(
    config: Any,
    workdir: str,
    writer: Any = None,
    devices: list | None = None,
    validate: bool = True,
) -> dict[str, Any]:
    """Runs `config.stage` (or every stage for `all`) and returns each stage's summary.

    `writer` is a CLU metric writer (default: TensorBoard files + console on process 0);
    `devices` restricts the mesh (default: every device of every process); `validate=False` where
    the entry point has validated this config already (`cli.run` does).
    """
    if validate:
        validate_config(config)
    settings = config_fields.parse(config)  # the stages read the parsed fields from here
    workdir = checkpointing.absolute(workdir)  # gs:// stays gs://
    epath.Path(workdir).mkdir(parents=True, exist_ok=True)
    mesh = data_mesh(devices)
    check_global_batch(config.batch_size, mesh, "batch_size")
    check_global_batch(config.eval_batch_size, mesh, "eval_batch_size")
    if settings.pretrain_parts:
        check_global_batch(config.pretrain.batch_size, mesh, "pretrain.batch_size")
    model = build_model(config)
    rerun = provenance.check_finished_stages(config, workdir)  # a stale workdir fails here
    writer = writer or _default_writer(workdir)
    if jax.process_index() == 0:
        run_info.write_run_info(config, workdir, mesh)

    if config.stage == "all":
        stages = tuple(s for s in STAGE_ORDER if s != "pretrain" or settings.pretrain_parts)
    else:
        stages = (config.stage,)
    summaries: dict[str, Any] = {}
    for stage in stages:
        done = epath.Path(workdir) / stage / "DONE.json"
        if done.exists() and stage in rerun:
            log.info(
                "stage %s: its config fields changed since it finished; running it again", stage
            )
        elif done.exists():
            log.info("stage %s: already finished (%s), skipping", stage, done)
            summaries[stage] = json.loads(done.read_text())
            continue
        log.info("stage %s: starting", stage)
        if jax.process_index() == 0 and provenance.read_record(workdir, stage) is None:
            provenance.write_record(config, workdir, stage)  # what a half-finished stage ran with
        summary = STAGES[stage](config, workdir, model, mesh, writer, settings)
        if summary.get("preempted"):
            summaries[stage] = summary
            break
        if jax.process_index() == 0:
            provenance.write_record(config, workdir, stage)  # what the finished stage ran with
            done.parent.mkdir(parents=True, exist_ok=True)
            done.write_text(json.dumps(summary, indent=1, default=float))
        faults.barrier(f"stage {stage} done")
        summaries[stage] = summary
    writer.flush()
    return summaries


def _default_writer(workdir: str):
    """TensorBoard event files and console lines on process 0, console only on the others."""
    from clu import metric_writers

    return metric_writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)


def run_eval_stage(config, workdir, model, mesh, writer, settings: Settings) -> dict[str, Any]:
    variables = restore_stage_variables(config, workdir, model, mesh, "sampler")
    results = evaluate.evaluate(config, model, variables, mesh, ks=settings.eval_ks)
    evaluate.write_per_video(os.path.join(workdir, "eval"), results.pop("per_video"))
    if jax.process_index() == 0:
        out = epath.Path(workdir) / "eval"
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(results, indent=1))
        table = evaluate.markdown_table(results)
        (out / "results.md").write_text(table + "\n")
    return results


STAGES: dict[str, Callable[..., dict[str, Any]]] = {
    **TRAINING_STAGES,
    "eval": run_eval_stage,
}
