"""Paired comparisons from a finished evaluation: NSNet against each baseline, early exit against
fixed K, each a difference over the same test videos with its 95% paired bootstrap interval.

    python -m nsnet_jax.compare --config=configs/salient_fashion.py \
        --workdir=/tmp/salient_fashion

Prints one JSON object (reads WORKDIR/eval/results.json and per_video*.jsonl; runs nothing).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import numpy as np

from nsnet_jax.config_checks import eval_ks


def nsnet_vs_baselines(config: Any, workdir: str, results: dict[str, Any]) -> list[dict]:
    """Per baseline, K and metric (top-1, evidence recall): NSNet minus the baseline."""
    from nsnet_jax.evaluation.evaluate import per_video_results
    from nsnet_jax.evaluation.intervals import METRICS, paired_bootstrap, per_video_metric

    ks = eval_ks(config)
    methods = sorted({r["method"] for r in results["rows"] if r["k"] in ks} - {"nsnet", "all"})
    per = per_video_results(config, workdir, ("nsnet", *methods))
    rows = []
    for m in methods:
        if not np.array_equal(per[m]["video_id"], per["nsnet"]["video_id"]):
            raise ValueError(f"{m} and nsnet were evaluated on different videos")
        for k in ks:
            for metric in METRICS:
                a, b = (
                    per_video_metric(per["nsnet"], metric, k),
                    per_video_metric(per[m], metric, k),
                )
                if np.isnan(a).all():
                    continue
                mean, lo, hi = paired_bootstrap((a - b)[None])
                rows.append({
                    "baseline": m, "k": k, "metric": metric, "nsnet": float(np.nanmean(a)),
                    "baseline_value": float(np.nanmean(b)), "diff": mean, "lo": lo, "hi": hi,
                })  # fmt: skip
    return rows


def early_exit_vs_fixed(results: dict[str, Any]) -> list[dict]:
    """Per threshold of the sweep and fixed K <= K_max: early exit minus NSNet-K in top-1."""
    from nsnet_jax.evaluation.early_exit_report import paired_difference

    section = results.get("early_exit")
    if not section:
        return []
    return [
        {"threshold": r["threshold"], "k": k, **paired_difference(section, r["threshold"], k)}
        for r in section["rows"]
        for k in range(1, section["k_max"] + 1)
    ]


def compare(config: Any, workdir: str) -> dict[str, Any]:
    with open(os.path.join(workdir, "eval", "results.json")) as f:
        results = json.load(f)
    return {
        "nsnet_vs_baselines": nsnet_vs_baselines(config, workdir, results),
        "early_exit_vs_fixed_k": early_exit_vs_fixed(results),
    }


def main(argv: list[str] | None = None) -> None:
    from nsnet_jax import cli

    cli.run(
        lambda config, workdir, args: print(json.dumps(compare(config, workdir))),
        workdir="required",
        argv=argv,
    )


if __name__ == "__main__":
    main(sys.argv)
