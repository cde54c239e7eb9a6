"""Evaluation of NSNet at each K beside the baselines that share its recognizer.

Methods (evaluation/methods.py): nsnet (the sampler's top-K), uniform (segment centres), random
(K distinct frames, seeded), oracle (ground-truth evidence frames first; only where the dataset has
evidence), and all (the recognizer on all T frames). Every example of the split counts exactly once
across processes: the input pads the last batch and marks padding with mask=0, dropped here.
With eval.early_exit_thresholds (or a budget), early exit on NSNet's ranking is reported beside
them (evaluation/early_exit_eval.py).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils

from nsnet_jax.contracts import eval_ks
from nsnet_jax.costs.flops import count_gmacs
from nsnet_jax.costs.timing import median_seconds
from nsnet_jax.evaluation import early_exit_eval, early_exit_report, metrics, sampler_heads
from nsnet_jax.evaluation.methods import METHODS, active_methods, select_functions
from nsnet_jax.inference.jitted import (
    make_all_frames_fn,
    make_recognize_fn,
    make_scores_fn,
    uniform_indices,
)
from nsnet_jax.input_pipeline import pipeline
from nsnet_jax.models.nsnet import NSNet
from nsnet_jax.models.selection import topk_indices
from nsnet_jax.sharding import batch_sharding, host_local

log = logging.getLogger("nsnet_jax")


def _gather(x: np.ndarray) -> np.ndarray:
    """Concatenate every process's rows (a no-op on one process)."""
    if jax.process_count() == 1:
        return x
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def evaluate(
    config: Any, model: NSNet, variables: Any, mesh, ks: Sequence[int] | None = None
) -> dict[str, Any]:
    """`ks`: the K values to report, as the runner parsed them (else from eval.num_select)."""
    ks = eval_ks(config) if ks is None else list(ks)
    batches, meta = pipeline.create_dataset(
        config.data, config.data.eval_split, train=False,
        global_batch_size=config.eval_batch_size, seed=config.seed,
    )  # fmt: skip
    baselines = config.eval.baselines
    methods = active_methods(baselines, meta.has_evidence, config)
    select = select_functions(methods, config, model, variables)
    sharding = batch_sharding(mesh)
    scores_fn = make_scores_fn(model, mesh)
    recognize = make_recognize_fn(model, mesh)
    all_frames = make_all_frames_fn(model, mesh)
    rng = np.random.default_rng(config.seed + jax.process_index())
    exit_on, exit_parts = early_exit_eval.enabled(config), []

    logits = {(m, k): [] for m in methods for k in ks}
    chosen = {(m, k): [] for m in methods for k in ks}
    all_logits, labels, evidence, ids, sampler_scores = [], [], [], [], []
    heads_fn, heads = sampler_heads.make_heads_fn(model, mesh), {"frame": [], "attention": []}
    timing_batch = None
    for step, host in enumerate(batches):
        keep = host["mask"] > 0
        batch = pipeline.to_global(host, sharding)
        if timing_batch is None:
            timing_batch = batch
        scores = host_local(scores_fn(variables, batch["sampler_frames"]), mesh)
        for k in ks:
            for m in methods:
                args = (scores, host["evidence"], rng, k, host["sampler_frames"])
                local_idx = select[m](*args)
                idx = jax.make_array_from_process_local_data(sharding, local_idx)
                out = recognize(variables, batch["frames"], idx)
                logits[(m, k)].append(host_local(out, mesh)[keep])
                chosen[(m, k)].append(local_idx[keep])
        if exit_on:
            args = (recognize, variables, batch["frames"], scores, max(ks), mesh)
            exit_parts.append(early_exit_eval.batch_prefix(*args, keep))
        if baselines:
            all_logits.append(host_local(all_frames(variables, batch["frames"]), mesh)[keep])
        labels.append(host["labels"][keep])
        evidence.append(host["evidence"][keep])
        ids.append(np.asarray(host["video_id"])[keep])
        sampler_scores.append(scores[keep])
        for name, value in heads_fn(variables, batch["sampler_frames"]).items():
            heads[name].append(value[keep])
        if step % 10 == 0:
            log.info("eval: batch %d/%d", step + 1, meta.steps_per_epoch)

    labels_all = _gather(np.concatenate(labels))
    evidence_all = _gather(np.concatenate(evidence))
    rows = []
    gmacs_by_k = {k: count_gmacs(_with_k(config, k)) for k in ks}  # each lowers both networks
    for k in ks:
        gmacs = gmacs_by_k[k]
        for m in methods:
            scores_mk = _gather(np.concatenate(logits[(m, k)]))
            idx_mk = _gather(np.concatenate(chosen[(m, k)]))
            row = _score_row(m, k, scores_mk, labels_all)
            row["evidence_recall"] = (
                metrics.evidence_recall(idx_mk, evidence_all) if meta.has_evidence else None
            )
            uses_sampler = METHODS[m].uses_sampler
            row["gmacs"] = gmacs["video_gmacs"] if uses_sampler else gmacs["uniform_gmacs"]
            if METHODS[m].extra_gmacs is not None:
                row["gmacs"] += METHODS[m].extra_gmacs(config)
            rows.append(row)
    if baselines:
        t = config.data.num_frames
        row = _score_row("all", t, _gather(np.concatenate(all_logits)), labels_all)
        row["evidence_recall"] = 1.0 if meta.has_evidence else None
        row["gmacs"] = gmacs_by_k[ks[0]]["all_frames_gmacs"]
        rows.append(row)
    jitted = (scores_fn, recognize, all_frames)  # already compiled above: time, don't recompile
    speeds = _measure_speeds(config, mesh, variables, timing_batch, ks, methods, jitted)
    for row in rows:
        row["videos_per_s"] = speeds.get((row["method"], row["k"]))
    local = {(m, k): (np.concatenate(logits[(m, k)]), np.concatenate(chosen[(m, k)]))
             for m in methods for k in ks}  # fmt: skip
    if baselines:
        local[("all", config.data.num_frames)] = (np.concatenate(all_logits), None)
    per_video = per_video_lines(
        np.concatenate(ids), np.concatenate(labels), np.concatenate(sampler_scores), local,
        evidence=np.concatenate(evidence) if meta.has_evidence else None,
    )  # fmt: skip
    extra = {
        "sampler_heads": sampler_heads.summary(
            _gather(np.concatenate(heads["frame"])), _gather(np.concatenate(heads["attention"])),
            config.model.num_select, evidence_all if meta.has_evidence else None,
        ) | {"attention_used": sampler_heads.attention_used(config)}
    }  # fmt: skip
    sampler_heads.check(extra["sampler_heads"], config)
    if exit_on:
        gmacs = early_exit_eval.gmacs_table(gmacs_by_k, max(ks))
        fns = (scores_fn, recognize, variables, mesh, gmacs, max(ks))
        extra["early_exit"] = early_exit_eval.report(
            config, *(_gather(np.concatenate(p)) for p in zip(*exit_parts, strict=True)),
            labels_all, np.concatenate(ids) if jax.process_count() == 1 else None, gmacs,
            evidence=evidence_all if meta.has_evidence else None,
            budget_threshold=early_exit_eval.budget_threshold(config, *fns),
        )  # fmt: skip
    return {
        **extra,
        "per_video": per_video,
        "split": config.data.eval_split,
        "num_videos": int(len(labels_all)),
        "has_evidence": meta.has_evidence,
        "backend": jax.default_backend(),
        "devices": jax.device_count(),
        "rows": rows,
    }


def per_video_lines(
    video_ids: np.ndarray,
    labels: np.ndarray,
    sampler_scores: np.ndarray,
    outputs: dict[tuple[str, int], tuple[np.ndarray, np.ndarray | None]],
    top: int = 5,
    evidence: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """One line per (video, method, K): labels, predicted top-5, selected frames, sampler scores.

    `outputs` maps (method, K) to (logits [N, C], selected indices [N, K] or None for all-T).
    """
    lines = []
    for (method, k), (logits, idx) in outputs.items():
        probs = np.asarray(jax.nn.softmax(np.asarray(logits, np.float32), axis=-1))
        order = np.argsort(-probs, axis=1, kind="stable")[:, :top]
        for i, vid in enumerate(video_ids):
            lines.append({
                "video_id": vid.decode() if isinstance(vid, bytes) else str(vid),
                "labels": np.flatnonzero(labels[i]).tolist(),
                "method": method,
                "k": int(k),
                "top5": [[int(c), round(float(probs[i, c]), 6)] for c in order[i]],
                "selected": list(range(k)) if idx is None else [int(t) for t in idx[i]],
                "sampler_scores": [round(float(x), 6) for x in sampler_scores[i]],
            })  # fmt: skip
            if evidence is not None:
                lines[-1]["evidence"] = np.flatnonzero(evidence[i]).tolist()
    return lines


def write_per_video(eval_dir: str, lines: list[dict[str, Any]]) -> str:
    """`per_video.jsonl` beside results.json; on a pod each process writes its own rows."""
    import json

    from etils import epath

    name = "per_video.jsonl"
    if jax.process_count() > 1:
        name = f"per_video-{jax.process_index():05d}-of-{jax.process_count():05d}.jsonl"
    path = epath.Path(eval_dir) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return str(path)


def per_video_results(
    config: Any, workdir: str, methods: tuple[str, ...] = ("nsnet",)
) -> dict[str, dict[str, np.ndarray]]:
    """Each method's per-video outcome at each K, from WORKDIR/eval/per_video*.jsonl (read once).

    Per method: video_id [N], has_evidence [N] and, per K, correct_K [N] (top-1 is a label) and
    hit_K [N] (a selected frame is an evidence frame): what the paired intervals need.
    """
    import glob
    import json
    import os

    ks = eval_ks(config)
    rows: dict[tuple[str, int], dict[str, dict]] = {(m, k): {} for m in methods for k in ks}
    for path in sorted(glob.glob(os.path.join(workdir, "eval", "per_video*.jsonl"))):
        with open(path) as f:
            for line in f:
                r = json.loads(line)
                if (r["method"], r["k"]) in rows:
                    rows[(r["method"], r["k"])][r["video_id"]] = r
    results = {}
    for method in methods:
        first = rows[(method, ks[0])]
        ids = sorted(first)
        if not ids:
            raise FileNotFoundError(f"no {method} rows in {workdir}/eval/per_video*.jsonl")
        out: dict[str, np.ndarray] = {
            "video_id": np.asarray(ids, dtype=str),
            "has_evidence": np.asarray([bool(first[v].get("evidence")) for v in ids]),
        }
        for k in ks:
            lines = [rows[(method, k)][v] for v in ids]
            out[f"correct_{k}"] = np.asarray([r["top5"][0][0] in r["labels"] for r in lines])
            out[f"hit_{k}"] = np.asarray(
                [bool(set(r["selected"]) & set(r.get("evidence", []))) for r in lines]
            )
        results[method] = out
    return results


def _with_k(config: Any, k: int) -> Any:
    c = config.copy_and_resolve_references()
    with c.unlocked():
        c.model.num_select = k
    return c


def _score_row(method: str, k: int, scores: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    return {
        "method": method,
        "k": int(k),
        "top1": metrics.topk_accuracy(scores, labels, 1),
        "top5": metrics.topk_accuracy(scores, labels, 5),
        "mAP": metrics.mean_average_precision(scores, labels),
    }


def _measure_speeds(config, mesh, variables, batch, ks, methods, jitted) -> dict:
    """videos/s of each method on one eval batch (pre-decoded frames), median of repeats.

    Methods that use the sampler run it and the device top-k end to end; the others share the
    recognizer-on-K time, which does not depend on which K frames they chose.
    """
    if batch is None:
        return {}
    n = batch["frames"].shape[0]
    repeats = config.eval.timing_repeats
    sharding = batch_sharding(mesh)
    scores_fn, recognize, all_frames = jitted
    topk_fn = jax.jit(topk_indices, static_argnums=1, out_shardings=sharding)
    out = {}
    for k in ks:
        uniform = jax.make_array_from_process_local_data(
            sharding, uniform_indices(n // jax.process_count(), config.data.num_frames, k)
        )

        def nsnet(k=k):
            idx = topk_fn(scores_fn(variables, batch["sampler_frames"]), k)
            return recognize(variables, batch["frames"], idx)

        sampled = n / median_seconds(nsnet, repeats)
        fixed = n / median_seconds(
            lambda u=uniform: recognize(variables, batch["frames"], u), repeats
        )
        for m in methods:
            out[(m, k)] = sampled if METHODS[m].uses_sampler else fixed
    out[("all", config.data.num_frames)] = n / median_seconds(
        lambda: all_frames(variables, batch["frames"]), repeats
    )
    return out


def _fmt(value: Any, pct: bool = False) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    return f"{100 * value:.1f}" if pct else f"{value:.3g}"


def markdown_table(results: dict[str, Any]) -> str:
    head = (
        "| method | K | top-1 (%) | top-5 (%) | mAP (%) | evidence recall | GMACs/video "
        "| videos/s |\n"
        "|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for r in results["rows"]:
        lines.append(
            f"| {r['method']} | {r['k']} | {_fmt(r['top1'], True)} | {_fmt(r['top5'], True)} | "
            f"{_fmt(r['mAP'], True)} | {_fmt(r['evidence_recall'])} | {_fmt(r['gmacs'])} | "
            f"{_fmt(r['videos_per_s'])} |"
        )
    if "early_exit" in results:
        lines.append(early_exit_report.markdown(results["early_exit"]))
    heads = results.get("sampler_heads")
    if heads is not None and sampler_heads.warns(heads):
        lines.append(f"\n**Warning:** {sampler_heads.warning_text(heads)}.")
    return "\n".join(lines)
