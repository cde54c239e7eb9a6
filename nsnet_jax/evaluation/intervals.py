"""Paired differences over the same test videos (and seeds) with 95% bootstrap intervals: what the
ablation sweep, the baseline comparisons and early exit report beside their means."""

from __future__ import annotations

import numpy as np

METRICS = ("top1", "evidence_recall")


def per_video_metric(result: dict[str, np.ndarray], metric: str, k: int) -> np.ndarray:
    """One value per video whose mean is the metric: correct for top-1; hit (NaN where the video
    has no evidence) for the evidence recall."""
    if metric == "top1":
        return result[f"correct_{k}"].astype(np.float64)
    return np.where(result["has_evidence"], result[f"hit_{k}"], np.nan)


def paired_bootstrap(
    diff: np.ndarray, num_resamples: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """Mean of diff [seeds, videos] and its 95% percentile interval, resampling seeds and videos.

    Columns that are NaN in every seed (videos without evidence) are dropped first.
    """
    diff = diff[:, ~np.isnan(diff).all(0)]
    if np.isnan(diff).any():
        raise ValueError("paired differences must be NaN in every seed of a video or in none")
    s, n = diff.shape
    rng = np.random.default_rng(seed)
    seed_w = rng.multinomial(s, np.full(s, 1.0 / s), size=num_resamples).astype(np.float64)
    stats = np.empty(num_resamples)
    for start in range(0, num_resamples, 250):  # [250, N] video weights at a time
        stop = min(start + 250, num_resamples)
        video_w = rng.multinomial(n, np.full(n, 1.0 / n), size=stop - start).astype(np.float64)
        stats[start:stop] = np.einsum("bs,sn,bn->b", seed_w[start:stop], diff, video_w) / (s * n)
    lo, hi = np.percentile(stats, [2.5, 97.5])
    return float(diff.mean()), float(lo), float(hi)
