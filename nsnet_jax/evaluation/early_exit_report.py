"""Early exit's report: the sweep as a markdown table, and paired differences to fixed-K NSNet.

Both read results.json's `early_exit` section (evaluation/early_exit_eval.py's `report`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nsnet_jax.inference import exit_rules


def markdown(section: dict[str, Any]) -> str:
    """The sweep as a table to append under the fixed-K one."""
    lines = [
        f"\nEarly exit ({section['rule']}, K_max={section['k_max']}):\n",
        "| threshold | top-1 (%) | mAP (%) | mean frames | GMACs/video | p95 GMACs "
        "| evidence recall |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in section["rows"]:
        rec = "-" if r["evidence_recall"] is None else f"{r['evidence_recall']:.3g}"
        mark = " (budget)" if r.get("budget") else ""
        lines.append(
            f"| {r['threshold']:g}{mark} | {100 * r['top1']:.1f} | {100 * r['mAP']:.1f} | "
            f"{r['mean_frames']:.2f} | {r['gmacs']:.3g} | {r['gmacs_p95']:.3g} | {rec} |"
        )
    return "\n".join(lines)


def paired_difference(section: dict[str, Any], threshold: float, k: int) -> dict[str, float]:
    """Early exit at `threshold` minus fixed-K NSNet-k in top-1 over the same test videos, with
    the paired 95% bootstrap interval, and both mean GMACs, from results.json's `early_exit`."""
    from nsnet_jax.evaluation.intervals import paired_bootstrap

    pv = section["per_video"]
    conf, correct = np.asarray(pv["confidence"]), np.asarray(pv["correct"], np.float64)
    used = exit_rules.frames_used(conf, threshold)
    exit_correct = correct[np.arange(len(used)), used - 1]
    mean, lo, hi = paired_bootstrap((exit_correct - correct[:, k - 1])[None])
    gmacs = np.asarray(section["gmacs_by_frames"])
    return {
        "top1_diff": mean, "lo": lo, "hi": hi,
        "exit_top1": float(exit_correct.mean()), "fixed_top1": float(correct[:, k - 1].mean()),
        "exit_gmacs": float(exit_rules.video_gmacs(used, gmacs).mean()),
        "fixed_gmacs": float(gmacs[k - 1]), "mean_frames": float(used.mean()),
    }  # fmt: skip
