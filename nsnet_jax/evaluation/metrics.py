"""Video-level metrics on host numpy arrays: top-k accuracy, mAP, the evidence recall."""

from __future__ import annotations

import numpy as np


def topk_accuracy(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Fraction of videos with one of their labels (multi-hot [N, C]) among the k best scores."""
    k = min(k, scores.shape[1])
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    hit = np.take_along_axis(labels > 0, top, axis=1).any(axis=1)
    return float(hit.mean()) if len(hit) else float("nan")


def average_precision(scores: np.ndarray, positives: np.ndarray) -> float:
    """Area under the precision-recall curve as the mean precision at each positive's rank."""
    order = np.argsort(-scores, kind="stable")
    hits = positives[order].astype(np.float64)
    if hits.sum() == 0:
        return float("nan")
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float((precision * hits).sum() / hits.sum())


def mean_average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mean over the classes that have at least one positive video (ActivityNet/FCVID mAP)."""
    aps = [average_precision(scores[:, c], labels[:, c] > 0) for c in range(labels.shape[1])]
    aps = [a for a in aps if not np.isnan(a)]
    return float(np.mean(aps)) if aps else float("nan")


def evidence_recall(indices: np.ndarray, evidence: np.ndarray) -> float:
    """Fraction of videos (with any evidence) where at least one selected frame is evidence."""
    evidence = np.asarray(evidence, bool)
    has = evidence.any(axis=1)
    hit = np.take_along_axis(evidence, np.asarray(indices), axis=1).any(axis=1)
    return float(hit[has].mean()) if has.any() else float("nan")
