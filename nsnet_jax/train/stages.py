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

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath

from input_pipeline import pipeline
from nsnet_jax.models.nsnet import NSNet
from nsnet_jax.sharding import batch_sharding, host_local
from nsnet_jax.train import checkpointing, faults, feature_cache, losses, pretrain
from nsnet_jax.train.init import create_variables, restore_stage_variables
from nsnet_jax.train.loop import train_stage
from nsnet_jax.train.pseudo_labels import load_pseudo_labels, video_id_str
from nsnet_jax.train.step import pseudo_label_ratio, stage_seed

log = logging.getLogger("nsnet_jax")

# =============================================================================================
# Stage 0 (optional): pretrain the backbones on labelled stills
# =============================================================================================


def run_pretrain_stage(config, workdir, model, mesh, writer) -> dict[str, Any]:
    from input_pipeline import stills

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
    for part in pretrain.parts(config):
        variables, metrics = pretrain.pretrain_part(
            config, part, train, test, stills.NUM_CLASSES, mesh
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


def run_recognizer_stage(config, workdir, model, mesh, writer) -> dict[str, Any]:
    variables = create_variables(config, model, mesh, workdir=workdir, pretrained=("recognizer",))
    return train_stage("recognizer", config, workdir, model, mesh, writer, variables)


# =============================================================================================
# Stage 2: pseudo labels
# =============================================================================================


def run_pseudo_label_stage(config, workdir, model, mesh, writer) -> dict[str, Any]:
    """Per-frame p_t[y], correctness and (maxpool_mlp) pool share for every training video, one
    .npz part per process."""
    variables = restore_stage_variables(
        config, workdir, model, mesh, "recognizer", parts=("recognizer",)
    )
    batches, meta = pipeline.create_dataset(
        config.data, config.data.train_split, train=False,
        global_batch_size=config.eval_batch_size, seed=config.seed, views=("recognizer",),
    )  # fmt: skip

    @jax.jit
    def frame_stats(variables, frames, labels):
        out = model.apply(variables, frames, method=NSNet.recognize)
        p_gt, correct = losses.ground_truth_stats(out["frame_logits"], labels)
        share = out.get("pool_share")
        share = jnp.zeros_like(p_gt) if share is None else losses.true_class_share(share, labels)
        return p_gt, correct, share

    ids, p_gts, corrects, shares, evidence = [], [], [], [], []
    sharding = batch_sharding(mesh)
    for host_batch in batches:
        batch = pipeline.to_global(host_batch, sharding)
        p_gt, correct, share = frame_stats(variables, batch["frames"], batch["labels"])
        keep = host_batch["mask"] > 0
        ids.extend(video_id_str(v) for v in np.asarray(host_batch["video_id"])[keep])
        p_gts.append(host_local(p_gt, mesh)[keep])
        corrects.append(host_local(correct, mesh)[keep])
        shares.append(host_local(share, mesh)[keep])
        evidence.append(host_batch["evidence"][keep])
    out_dir = epath.Path(workdir) / "pseudo_labels"
    out_dir.mkdir(parents=True, exist_ok=True)
    p_gt = np.concatenate(p_gts)
    correct = np.concatenate(corrects)
    share = np.concatenate(shares)
    with (out_dir / f"part-{jax.process_index():05d}.npz").open("wb") as f:
        np.savez(f, video_id=np.asarray(ids, dtype=str), p_gt=p_gt, correct=correct, share=share)
    faults.barrier("pseudo labels written")
    table = load_pseudo_labels(workdir)
    evidence = np.concatenate(evidence).astype(bool)
    on_evidence = config.pseudo_label.rule == "evidence"  # the sampler stage's substitution
    hard = np.asarray(
        losses.pseudo_labels(
            jnp.asarray(p_gt),
            jnp.asarray(evidence if on_evidence else correct),
            config.pseudo_label.rule,
            ratio=pseudo_label_ratio(config),
            threshold=config.pseudo_label.threshold,
            share=jnp.asarray(share),
        )  # fmt: skip
    )
    summary = {
        "videos": len(table.ids),
        "mean_p_true_class": float(table.p_gt.mean()),
        "frames_argmax_correct": float(table.correct.mean()),
        "positives_per_video": float(hard.sum(1).mean()),
    }
    if meta.has_evidence and evidence.any():  # how well the rule finds the true salient frames
        positive = hard > 0.5
        summary["pseudo_label_precision"] = float((positive & evidence).sum() / positive.sum())
        summary["pseudo_label_recall"] = float((positive & evidence).sum() / evidence.sum())
        log.info("pseudo labels vs ground-truth evidence (this process): %s", summary)
    return summary


# =============================================================================================
# Stage 3: the sampler
# =============================================================================================


def run_sampler_stage(config, workdir, model, mesh, writer) -> dict[str, Any]:
    variables = create_variables(  # the recognizer comes from its own stage, below
        config, model, mesh, seed=stage_seed(config, "sampler"), workdir=workdir,
        pretrained=("sampler",),
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
    if config.sampler_training.get("feature_cache", False):
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
        add_host_keys=add_host_keys, batches_from=batches_from,
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
