"""NSNet's training stages, one function each, in the order `stage=all` runs them.

    pretrain       stage 0, optional: backbones as classifiers of labelled stills (pretrain.py)
    recognizer     stage 1: the recognizer on T frames, TSN-style (video labels only)
    pseudo_labels  stage 2: the frozen recognizer scores every frame of the training split
    sampler        stage 3: the sampler, trained to suppress non-salient frames

A stage's starting variables come from `init.py`, stages 1 and 3 train in `loop.py`, and the
pseudo-label table is `pseudo_labels.py`. The runner that orders the stages, resumes and adds
evaluation is `nsnet_jax/pipeline_run.py`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from nsnet_jax.config_fields import Settings
from nsnet_jax.input_pipeline import pipeline
from nsnet_jax.train import checkpointing, faults, feature_cache, pretrain, pseudo_labels
from nsnet_jax.train.init import create_variables, restore_stage_variables
from nsnet_jax.train.loop import train_stage
from nsnet_jax.train.pseudo_labels import load_pseudo_labels
from nsnet_jax.train.step import stage_seed

log = logging.getLogger("nsnet_jax")

# =============================================================================================
# Stage 0 (optional): pretrain the backbones on labelled stills
# =============================================================================================


def run_pretrain_stage(config, workdir, model, mesh, writer, settings: Settings) -> dict[str, Any]:
    from nsnet_jax.input_pipeline import stills

    pc = config.pretrain
    start = time.time()
    train = stills.make_stills(pc.stills_variant, "train", pc.num_train, seed=config.seed)
    test = stills.make_stills(pc.stills_variant, "test", pc.num_test, seed=config.seed)
    summary: dict[str, Any] = {"stills_seconds": time.time() - start}
    log.info(
        "pretrain: %d train / %d test stills like salient_fashion/%s in %.0f s",
        pc.num_train, pc.num_test, stills.variant_config(pc.stills_variant).name,
        summary["stills_seconds"],
    )  # fmt: skip
    for part in settings.pretrain_parts:
        variables, metrics = pretrain.pretrain_part(
            config, part, train, test, stills.NUM_CLASSES, mesh, settings.pretrain_epochs[part]
        )
        checkpointing.save_variables(pretrain.variables_dir(workdir, part), variables)
        scalars = {f"pretrain/{part}/{k}": v for k, v in metrics.items() if np.isscalar(v)}
        writer.write_scalars(metrics["steps"], scalars)
        log.info(
            "pretrain %s: test still accuracy %.3f (per class %s)",
            part, metrics["test_accuracy"], metrics["test_accuracy_per_class"],
        )  # fmt: skip
        summary[part] = metrics
    return summary


# =============================================================================================
# Stage 1: the recognizer
# =============================================================================================


def run_recognizer_stage(
    config, workdir, model, mesh, writer, settings: Settings
) -> dict[str, Any]:
    variables = create_variables(
        config, model, mesh, workdir=workdir, pretrained=("recognizer",), settings=settings
    )
    return train_stage(
        "recognizer", config, workdir, model, mesh, writer, variables, settings=settings
    )


# =============================================================================================
# Stage 2: pseudo labels
# =============================================================================================


def run_pseudo_label_stage(
    config, workdir, model, mesh, writer, settings: Settings
) -> dict[str, Any]:
    """Per-frame p_t[y], correctness and (maxpool_mlp) pool share for every training video, one
    .npz part per process."""
    variables = restore_stage_variables(
        config, workdir, model, mesh, "recognizer", parts=("recognizer",)
    )
    scores = pseudo_labels.score_frames(config, model, variables, mesh)
    pseudo_labels.save_part(workdir, scores)
    faults.barrier("pseudo labels written")
    return pseudo_labels.summarize(config, load_pseudo_labels(workdir), scores)


# =============================================================================================
# Stage 3: the sampler
# =============================================================================================


def run_sampler_stage(config, workdir, model, mesh, writer, settings: Settings) -> dict[str, Any]:
    variables = create_variables(  # the recognizer comes from its own stage, below
        config, model, mesh, seed=stage_seed(config, "sampler"), workdir=workdir,
        pretrained=("sampler",), settings=settings,
    )  # fmt: skip
    recognizer = restore_stage_variables(
        config, workdir, model, mesh, "recognizer", parts=("recognizer",)
    )
    variables = {
        c: {**variables[c], "recognizer": recognizer[c]["recognizer"]}
        for c in ("params", "batch_stats")
    }
    table = load_pseudo_labels(workdir)
    on_evidence = config.pseudo_label.rule == "evidence"
    on_share = config.pseudo_label.rule == "maxpool_share"
    if on_evidence:
        _check_has_evidence(config)
    if on_share and table.share is None:
        raise ValueError(
            f"pseudo_label.rule=maxpool_share: {workdir}/pseudo_labels has no pool shares (written "
            "by an older version). Delete that folder and rerun --config.stage=pseudo_labels"
        )

    def add_host_keys(host_batch: dict) -> dict:
        rows = table.rows(host_batch["video_id"])
        keys = {"p_gt": table.p_gt[rows], "correct": table.correct[rows]}
        if on_evidence:  # the ground truth in place of the recognizer's verdict
            keys["correct"] = host_batch["evidence"].astype(bool)
        if on_share:
            keys["share"] = table.share[rows]
        return {**host_batch, **keys}

    batches_from = None
    if config.sampler_training.feature_cache:
        cache = feature_cache.extract(
            config, model, variables, mesh, seed=stage_seed(config, "sampler") + 5000
        )

        def batches_from(start_step: int, seed: int):
            it = feature_cache.batches(
                cache, seed=seed, global_batch_size=config.batch_size, start_step=start_step
            )
            return it, cache.steps_per_epoch(config.batch_size)

    return train_stage(
        "sampler", config, workdir, model, mesh, writer, variables,
        add_host_keys=add_host_keys, batches_from=batches_from, settings=settings,
    )  # fmt: skip


def _check_has_evidence(config) -> None:
    builder = pipeline.load_builder(config.data.name, config.data.data_dir or None)
    if not pipeline.dataset_meta_fields(builder)["has_evidence"]:
        raise ValueError(
            f"pseudo_label.rule=evidence trains the sampler on ground-truth evidence frames, but "
            f"dataset {config.data.name!r} has none. Use it on salient_fashion (or a dataset "
            "with an `evidence` feature), or pick another pseudo_label.rule"
        )


TRAINING_STAGES: dict[str, Callable[..., dict[str, Any]]] = {
    "pretrain": run_pretrain_stage,
    "recognizer": run_recognizer_stage,
    "pseudo_labels": run_pseudo_label_stage,
    "sampler": run_sampler_stage,
}
