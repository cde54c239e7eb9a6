"""Early exit's threshold sweep: per threshold, the accuracy and the GMACs per video it costs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from nsnet_jax.evaluation import metrics
from nsnet_jax.inference import exit_rules


def sweep(
    prefix_logits: np.ndarray,
    labels: np.ndarray,
    thresholds: Sequence[float],
    *,
    gmacs: np.ndarray,
    rule: str = "max_prob",
    score_order: np.ndarray | None = None,
    evidence: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """One row per threshold: top-1/top-5/mAP, mean and p95 GMACs per video, mean frames used.

    `gmacs` is `gmacs_table(K_max, ...)`.
    With `score_order` [B, K_max] (frame indices, best first) and `evidence` [B, T], the evidence
    recall of the frames each video used.
    """
    conf = exit_rules.confidences(prefix_logits, rule)
    rows = []
    for t in thresholds:
        used = exit_rules.frames_used(conf, t)
        logits = prefix_logits[np.arange(len(used)), used - 1]
        g = exit_rules.video_gmacs(used, gmacs)
        row = {
            "method": "early_exit",
            "k": int(prefix_logits.shape[1]),
            "threshold": float(t),
            "rule": rule,
            "top1": metrics.topk_accuracy(logits, labels, 1),
            "top5": metrics.topk_accuracy(logits, labels, 5),
            "mAP": metrics.mean_average_precision(logits, labels),
            "gmacs": float(g.mean()),
            "gmacs_p95": float(np.percentile(g, 95)),
            "mean_frames": float(used.mean()),
            "evidence_recall": None,
        }
        if score_order is not None and evidence is not None:
            used_mask = np.arange(score_order.shape[1])[None] < used[:, None]
            idx = np.where(used_mask, score_order, score_order[:, :1])  # repeats add no hits
            row["evidence_recall"] = metrics.evidence_recall(idx, evidence)
        rows.append(row)
    return rows
