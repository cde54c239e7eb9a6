"""Early exit inside evaluation: NSNet-j's logits for every j <= K_max, then the threshold sweep.

Prefix j is the recognizer on the j best-scored frames in temporal order, i.e. exactly the call
fixed-K NSNet-j makes (same jitted function, same shapes), so threshold 1.0 reproduces NSNet-K_max
and threshold 0 NSNet-1 bit for bit, and per-video comparisons with the fixed-K rows are paired.
This counts savings (GMACs of the frames used); `inference.early_exit` realises them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from nsnet_jax.evaluation import early_exit_sweep
from nsnet_jax.inference import exit_rules
from nsnet_jax.models.selection import topk_indices_by_score


def prefix_logits(
    recognize: Callable[[np.ndarray], np.ndarray], scores: np.ndarray, k_max: int
) -> tuple[np.ndarray, np.ndarray]:
    """(prefix logits [B, K_max, C], score order [B, K_max]) for host-local sampler scores.

    `recognize(indices [B, j])` runs the recognizer on those frames and returns host logits.
    """
    order = np.asarray(topk_indices_by_score(jax.numpy.asarray(scores), k_max))
    outs = [recognize(np.sort(order[:, :j], axis=1)) for j in range(1, k_max + 1)]
    return np.stack(outs, axis=1), order


def gmacs_table(gmacs_by_k: dict[int, dict[str, Any]], k_max: int) -> np.ndarray:
    """GMACs per video at 1..K_max frames, fixed-K NSNet's own count where it was made."""
    return exit_rules.gmacs_table_from_counts(gmacs_by_k, k_max)  # predict's table too


def enabled(config: Any) -> bool:
    """Whether evaluation runs early exit (configs written before the switch have it off)."""
    e = config.eval
    thresholds = exit_rules.parse_thresholds(e.get("early_exit_thresholds", ""))
    return bool(thresholds) or e.get("early_exit_budget_gmacs", 0.0) > 0


def report(
    config: Any,
    prefix: np.ndarray,
    order: np.ndarray,
    labels: np.ndarray,
    video_ids: np.ndarray | None,
    gmacs: np.ndarray,
    evidence: np.ndarray | None = None,
    budget_threshold: float | None = None,
) -> dict[str, Any]:
    """results.json's `early_exit`: the sweep's rows and per-video data for paired intervals.

    Per video: the confidence and correctness of every prefix, from which any threshold's frames
    used and top-1 follow (used = 1 + first conf > t, else K_max; correct = correct[used - 1]).
    """
    rule = exit_rules.config_rule(config)
    thresholds = exit_rules.parse_thresholds(config.eval.early_exit_thresholds)
    if budget_threshold is not None:
        thresholds = sorted(set(thresholds) | {budget_threshold})
    rows = early_exit_sweep.sweep(
        prefix, labels, thresholds, rule=rule, gmacs=gmacs, score_order=order, evidence=evidence,
    )  # fmt: skip
    for row in rows:
        row["budget"] = budget_threshold is not None and row["threshold"] == budget_threshold
    top = prefix.argmax(-1)  # [N, K_max]
    correct = np.take_along_axis(labels > 0, top, axis=1)
    conf = exit_rules.confidences(prefix, rule)
    return {
        "rule": rule,
        "k_max": int(prefix.shape[1]),
        "budget_gmacs": float(config.eval.get("early_exit_budget_gmacs", 0.0)),
        "gmacs_by_frames": [float(g) for g in gmacs],
        "budget_threshold": budget_threshold,
        **_holdout_record(config, budget_threshold),
        "rows": rows,
        "per_video": {
            "video_id": [v.decode() if isinstance(v, bytes) else str(v) for v in video_ids]
            if video_ids is not None
            else None,  # on a pod only process 0's ids are at hand: per_video*.jsonl has them
            "confidence": conf.tolist(),  # unrounded: thresholds decide exactly as in the rows
            "correct": correct.astype(int).tolist(),
            "order": order.astype(int).tolist(),
        },
    }


def host_recognize(recognize, variables, frames, sharding, mesh) -> Callable[[np.ndarray], Any]:
    """`recognize` (make_recognize_fn) as host indices -> host logits for one global batch."""
    from nsnet_jax.sharding import host_local

    def run(local_idx: np.ndarray) -> np.ndarray:
        idx = jax.make_array_from_process_local_data(sharding, local_idx)
        return host_local(recognize(variables, frames, idx), mesh)

    return run


def batch_prefix(recognize, variables, frames, scores, k_max, mesh, keep) -> list[np.ndarray]:
    """[prefix logits, score order] of one evaluation batch, padding rows dropped."""
    from nsnet_jax.sharding import batch_sharding

    run = host_recognize(recognize, variables, frames, batch_sharding(mesh), mesh)
    return [a[keep] for a in prefix_logits(run, scores, k_max)]


def _holdout_record(config: Any, threshold: float | None) -> dict[str, Any]:
    """Where the budget's threshold was picked: the split and whether training saw it."""
    if threshold is None:
        return {}
    from nsnet_jax.evaluation import budget

    split, count, seen = budget.holdout_split(config)
    return {"holdout_split": split, "holdout_videos": count, "holdout_seen_in_training": seen}


def budget_threshold(config, scores_fn, recognize, variables, mesh, gmacs, k_max) -> float | None:
    """The threshold meeting eval.early_exit_budget_gmacs on held-out TRAINING videos, or None."""
    from jax.experimental import multihost_utils

    from nsnet_jax.evaluation import budget
    from nsnet_jax.input_pipeline import pipeline
    from nsnet_jax.sharding import batch_sharding, host_local

    target = float(config.eval.get("early_exit_budget_gmacs", 0.0))
    if target <= 0:
        return None
    sharding = batch_sharding(mesh)

    def run(host: dict[str, np.ndarray]) -> np.ndarray:
        batch = pipeline.to_global(host, sharding)
        scores = host_local(scores_fn(variables, batch["sampler_frames"]), mesh)
        rec = host_recognize(recognize, variables, batch["frames"], sharding, mesh)
        return prefix_logits(rec, scores, k_max)[0]

    prefix = budget.holdout_prefix_logits(config, run, config.eval_batch_size)
    if jax.process_count() > 1:  # every process must pick the same threshold
        prefix = np.asarray(multihost_utils.process_allgather(prefix, tiled=True))
    rule = exit_rules.config_rule(config)
    return budget.choose_threshold(prefix, target, gmacs=gmacs, rule=rule)
