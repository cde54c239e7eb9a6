"""NSNet training and evaluation, stage by stage: read top to bottom.

    pretrain       stage 0, optional: backbones as classifiers of labelled stills (pretrain.py)
    recognizer     stage 1: the recognizer on T frames, TSN-style (video labels only)
    pseudo_labels  stage 2: the frozen recognizer scores every frame of the training split
    sampler        stage 3: the sampler, trained to suppress non-salient frames
    eval           NSNet at K beside uniform-K, random-K, oracle-K and all-T, same recognizer

Each stage writes to `workdir/<stage>/` and ends with a `DONE.json` summary; `stage=all` runs the
stages in order and skips the finished ones, so rerunning a command resumes where it stopped.
The same code runs on one CPU device or a multi-host pod: one `data` mesh axis, replicated
parameters, per-process input assembled into global arrays, one jitted step.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath

from input_pipeline import pipeline
from nsnet_jax.config_checks import validate_config
from nsnet_jax.models.nsnet import NSNet, build_model, init_variables
from nsnet_jax.sharding import (
    batch_sharding,
    check_global_batch,
    data_mesh,
    host_local,
    replicated,
)
from nsnet_jax.train import (
    STAGE_ORDER,
    checkpointing,
    faults,
    feature_cache,
    losses,
    pretrain,
    provenance,
)
from nsnet_jax.train.step import (
    TrainState,
    build_stage_optimizer,
    create_train_state,
    input_views,
    make_train_step,
    pseudo_label_ratio,
    stage_seed,
)

log = logging.getLogger("nsnet_jax")


class NonFiniteLossError(FloatingPointError):
    pass


# =============================================================================================
# Entry point
# =============================================================================================


def train_and_evaluate(
    config: Any, workdir: str, writer: Any = None, devices: list | None = None
) -> dict[str, Any]:
    """Runs `config.stage` (or every stage for `all`) and returns each stage's summary.

    `writer` is a CLU metric writer (default: TensorBoard files + console on process 0);
    `devices` restricts the mesh (default: every device of every process).
    """
    validate_config(config)
    workdir = checkpointing.absolute(workdir)  # gs:// stays gs://
    epath.Path(workdir).mkdir(parents=True, exist_ok=True)
    mesh = data_mesh(devices)
    check_global_batch(config.batch_size, mesh, "batch_size")
    check_global_batch(config.eval_batch_size, mesh, "eval_batch_size")
    if pretrain.parts(config):
        check_global_batch(config.pretrain.batch_size, mesh, "pretrain.batch_size")
    model = build_model(config)
    rerun = provenance.check_finished_stages(config, workdir)  # a stale workdir fails here
    writer = writer or _default_writer(workdir)
    if jax.process_index() == 0:
        _write_run_info(config, workdir, mesh)

    if config.stage == "all":
        stages = tuple(s for s in STAGE_ORDER if s != "pretrain" or pretrain.parts(config))
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
        summary = STAGES[stage](config, workdir, model, mesh, writer)
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


def _write_config_json(config: Any, workdir: str) -> None:
    """config.json is this run's config; a different earlier one is kept beside it, never lost."""
    path = epath.Path(workdir) / "config.json"
    text = config.to_json_best_effort(indent=1)
    if path.exists() and path.read_text() != text:
        n = 1
        while (kept := epath.Path(workdir) / f"config.previous-{n}.json").exists():
            n += 1
        path.rename(kept)
        log.warning(
            "config differs from the workdir's earlier run; that config is kept as %s", kept
        )
    path.write_text(text)


def _write_run_info(config: Any, workdir: str, mesh) -> None:
    import importlib.metadata as md

    versions = {}
    for pkg in ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "tensorflow-datasets"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    info = {
        "versions": versions,
        "backend": jax.default_backend(),
        "devices": jax.device_count(),
        "local_devices": jax.local_device_count(),
        "processes": jax.process_count(),
        "mesh": dict(mesh.shape),
        "global_batch_size": config.batch_size,
        "local_batch_size": config.batch_size // jax.process_count(),
    }
    try:  # predict and export label their outputs with these
        meta = pipeline.dataset_meta_fields(
            pipeline.load_builder(config.data.name, config.data.data_dir)
        )
        info["class_names"] = list(meta["class_names"])
    except (FileNotFoundError, ValueError):
        info["class_names"] = None
    _write_config_json(config, workdir)
    (epath.Path(workdir) / "run_info.json").write_text(json.dumps(info, indent=1))


# =============================================================================================
# Model state: created sharded, optionally initialised from checkpoints
# =============================================================================================


def create_variables(
    config: Any,
    model: NSNet,
    mesh,
    seed: int | None = None,
    workdir: str | None = None,
    pretrained: tuple[str, ...] = pretrain.PARTS,
) -> dict[str, Any]:
    """params + batch_stats, created directly with their (replicated) sharding; with `workdir`,
    the `pretrained` parts' backbones start from stage `pretrain`'s weights where it ran."""

    def init(rng):
        return dict(init_variables(model, config, rng))

    rng = jax.random.key(config.seed if seed is None else seed)
    abstract = jax.eval_shape(init, rng)
    shardings = jax.tree.map(lambda _: replicated(mesh), abstract)
    variables = jax.jit(init, out_shardings=shardings)(rng)
    if workdir is not None:
        variables = _load_pretrain_stage(config, workdir, variables, mesh, pretrained)
    return _apply_init_from(config, variables, mesh)


def _load_pretrain_stage(
    config: Any, workdir: str, variables: dict, mesh, only: tuple[str, ...]
) -> dict:
    rep = replicated(mesh)
    done = epath.Path(workdir) / "pretrain" / "DONE.json"
    for part in (p for p in pretrain.parts(config) if p in only):
        path = pretrain.variables_dir(workdir, part)
        if not done.exists():  # a stage that died half-way may have left one part, unchecked
            raise FileNotFoundError(
                f"config.pretrain.parts names {part!r} but stage pretrain has not finished in "
                f"{workdir} ({done} is missing); run --config.stage=pretrain (or "
                "--config.stage=all) with this workdir first"
            )
        # only what the headless backbone has: a backbone that holds the video head (the
        # mean_logits aggregations) keeps that head's fresh init
        keep = pretrain.headless_shapes(config, part)
        target = {
            c: {k: v for k, v in variables[c][part]["backbone"].items() if k in keep[c]}
            for c in keep
        }
        target = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=rep), target
        )
        loaded = checkpointing.restore_variables(path, target)
        bad = [
            f"{jax.tree_util.keystr(k)}: config {want.shape} vs checkpoint {got.shape}"
            for (k, want), got in zip(
                jax.tree_util.tree_flatten_with_path(target)[0], jax.tree.leaves(loaded)
            )
            if tuple(want.shape) != tuple(got.shape)
        ]
        if bad:
            raise ValueError(
                f"{path} does not fit model.{part} (changed after stage pretrain ran?): "
                + "; ".join(bad[:5])
                + f". Move {workdir}/pretrain aside and rerun the stage"
            )
        variables = {
            c: {**tree, part: {**tree[part], "backbone": {**tree[part]["backbone"], **loaded[c]}}}
            if c in loaded
            else tree
            for c, tree in variables.items()
        }
        log.info("model.%s: backbone from stage pretrain (%s)", part, path)
    return variables


def _split_globs(spec: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in spec.split(",") if s.strip())


def _apply_init_from(config: Any, variables: dict, mesh) -> dict:
    """Backbone weights (model.*.init_from), then a whole earlier run (init_from)."""
    for part in ("sampler", "recognizer"):
        spec = config.model[part].init_from
        if not spec.format:
            continue
        from nsnet_jax.pretrained import load_pretrained

        loaded = load_pretrained(
            jax.device_get(variables),
            spec.path,
            spec.format,
            config.model[part].backbone,
            skip=_split_globs(spec.skip),
            scope=f"{part}/backbone",
        )
        variables = jax.device_put(dict(loaded), replicated(mesh))
        log.info("model.%s.init_from: loaded %s (%s)", part, spec.path, spec.format)
    if config.init_from.path:
        variables, loaded = checkpointing.load_params_by_path(
            variables, config.init_from.path, _split_globs(config.init_from.skip)
        )
        log.info("init_from: %d arrays from %s", len(loaded), config.init_from.path)
    return variables


# =============================================================================================
# The training loop shared by stages 1 and 3
# =============================================================================================


# final parts: the sub-networks a trained stage leaves in `<stage>/final`; seed offsets keep the
# stages' data orders and step rngs apart
_FINAL_PARTS = {"recognizer": ("recognizer",), "sampler": ("sampler", "recognizer")}
_SEED_OFFSETS = {"recognizer": 1, "sampler": 3}


def _train_stage(
    name: str,
    config: Any,
    workdir: str,
    model: NSNet,
    mesh,
    writer,
    variables: dict,
    add_host_keys: Callable[[dict], dict] | None = None,
    batches_from: Callable[[int, int], tuple[Iterator[dict], int]] | None = None,
) -> dict[str, Any]:
    """Optimizer, checkpoint restore, input at the restored position, then the step loop.

    batches_from(start_step, seed) -> (batches, steps_per_epoch) replaces the decoding input.
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
    tx, total = build_stage_optimizer(config, name, variables["params"], steps_per_epoch)
    rep = replicated(mesh)
    state = jax.jit(lambda v: create_train_state(v, tx), out_shardings=rep)(variables)
    if start:
        _check_checkpoint_matches_model(config, workdir, name, mngr, start, state)
        restored, ckpt_meta = checkpointing.restore(mngr, state.to_dict(), step=start)
        state = TrainState.from_dict(restored)
        log.info("%s: resumed from step %d (%s)", name, int(state.step), ckpt_meta)
        if int(state.step) != start or ckpt_meta.get("data_position", start) != start:
            raise RuntimeError(
                f"{ckpt_dir}/{start} holds step {int(state.step)} with data position "
                f"{ckpt_meta.get('data_position')}; the checkpoint directory is inconsistent"
            )
    step_fn = make_train_step(config, model, name, tx, total_steps=total)
    jit_step = jax.jit(step_fn, donate_argnums=0, out_shardings=(rep, rep))
    data_sharding = batch_sharding(mesh)
    base_rng = jax.random.key(seed + 1000)
    progress = _Progress(name, start, total)
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
    checkpointing.save_variables(_final_dir(workdir, name), final, resume_dir=ckpt_dir)
    return {"steps": total, "steps_per_epoch": steps_per_epoch, **metrics_host}


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


class _Progress:
    """One console line per log step: steps/s, ETA, and the step's metrics."""

    def __init__(self, name: str, start: int, total: int) -> None:
        self.name, self.start, self.total = name, start, total
        self.t0 = None

    def update(self, step: int, metrics: dict) -> None:
        if self.t0 is None:  # exclude the first step: it includes compilation
            self.t0, self.s0 = time.time(), step

    def log(self, step: int, metrics: dict) -> None:
        elapsed = time.time() - (self.t0 or time.time())
        rate = (step - self.s0) / elapsed if elapsed > 0 and step > self.s0 else float("nan")
        eta = (self.total - step) / rate if rate == rate and rate > 0 else float("nan")
        shown = " ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items()))
        log.info(
            "%s step %d/%d (%.0f%%) %.2f steps/s ETA %s | %s",
            self.name, step, self.total, 100 * step / self.total, rate, _fmt_eta(eta), shown,
        )  # fmt: skip


def _fmt_eta(seconds: float) -> str:
    if seconds != seconds:
        return "?"
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}"


def _final_dir(workdir: str, stage: str) -> str:
    return os.path.join(workdir, stage, "final")


def _restore_stage_variables(
    config, workdir, model, mesh, stage: str, parts: tuple[str, ...] = ("sampler", "recognizer")
) -> dict:
    """The `parts` (sub-networks) of the params + batch_stats a training stage left in `final`."""
    path = _final_dir(workdir, stage)
    if not epath.Path(path).exists():
        raise FileNotFoundError(
            f"stage {config.stage!r} needs the {stage!r} stage's result in {path}; run "
            f"--config.stage={stage} (or --config.stage=all) with this workdir first"
        )
    template = jax.eval_shape(lambda: dict(init_variables(model, config, jax.random.key(0))))
    template = {c: {p: template[c][p] for p in parts if p in template[c]} for c in template}
    rep = replicated(mesh)
    target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=rep), template)
    return checkpointing.restore_variables(path, target)


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
    return _train_stage("recognizer", config, workdir, model, mesh, writer, variables)


# =============================================================================================
# Stage 2: pseudo labels
# =============================================================================================


def run_pseudo_label_stage(config, workdir, model, mesh, writer) -> dict[str, Any]:
    """Per-frame p_t[y], correctness and (maxpool_mlp) pool share for every training video, one
    .npz part per process."""
    variables = _restore_stage_variables(
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
        ids.extend(_video_id_str(v) for v in np.asarray(host_batch["video_id"])[keep])
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


def _video_id_str(video_id: Any) -> str:
    return video_id.decode("utf-8") if isinstance(video_id, bytes) else str(video_id)


class PseudoLabelTable:
    def __init__(
        self, ids: np.ndarray, p_gt: np.ndarray, correct: np.ndarray, share: np.ndarray | None
    ) -> None:
        self.ids, self.p_gt, self.correct, self.share = ids, p_gt, correct, share
        self.row = {v: i for i, v in enumerate(ids.tolist())}

    def rows(self, video_ids: np.ndarray) -> list[int]:
        try:
            rows = [self.row[_video_id_str(v)] for v in video_ids]
        except KeyError as e:
            raise KeyError(
                f"video {e.args[0]!r} has no pseudo labels: they were computed on another dataset "
                "or split. Delete workdir/pseudo_labels and rerun --config.stage=pseudo_labels"
            ) from None
        return rows


def load_pseudo_labels(workdir: str) -> PseudoLabelTable:
    parts = sorted((epath.Path(workdir) / "pseudo_labels").glob("part-*.npz"))
    if not parts:
        raise FileNotFoundError(
            f"no pseudo labels in {workdir}/pseudo_labels; run --config.stage=pseudo_labels first"
        )
    ids, p_gt, correct, share = [], [], [], []
    for part in parts:
        with part.open("rb") as f:
            data = np.load(f, allow_pickle=False)
            ids.append(data["video_id"])
            p_gt.append(data["p_gt"])
            correct.append(data["correct"])
            share.append(data["share"] if "share" in data else None)
    shares = None if any(s is None for s in share) else np.concatenate(share)
    return PseudoLabelTable(
        np.concatenate(ids), np.concatenate(p_gt), np.concatenate(correct), shares
    )


# =============================================================================================
# Stage 3: the sampler
# =============================================================================================


def run_sampler_stage(config, workdir, model, mesh, writer) -> dict[str, Any]:
    variables = create_variables(  # the recognizer comes from its own stage, below
        config, model, mesh, seed=stage_seed(config, "sampler"), workdir=workdir,
        pretrained=("sampler",),
    )  # fmt: skip
    recognizer = _restore_stage_variables(
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

    return _train_stage(
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


# =============================================================================================
# Evaluation
# =============================================================================================


def run_eval_stage(config, workdir, model, mesh, writer) -> dict[str, Any]:
    from nsnet_jax.evaluation import evaluate

    variables = _restore_stage_variables(config, workdir, model, mesh, "sampler")
    results = evaluate.evaluate(config, model, variables, mesh)
    evaluate.write_per_video(os.path.join(workdir, "eval"), results.pop("per_video"))
    if jax.process_index() == 0:
        out = epath.Path(workdir) / "eval"
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(results, indent=1))
        table = evaluate.markdown_table(results)
        (out / "results.md").write_text(table + "\n")
    return results


STAGES: dict[str, Callable[..., dict[str, Any]]] = {
    "pretrain": run_pretrain_stage,
    "recognizer": run_recognizer_stage,
    "pseudo_labels": run_pseudo_label_stage,
    "sampler": run_sampler_stage,
    "eval": run_eval_stage,
}
