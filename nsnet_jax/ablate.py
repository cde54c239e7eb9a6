"""Ablation sweep over the open choices, over seeds, sharing one recognizer and pseudo labels.

    python -m nsnet_jax.ablate --config=configs/salient_fashion.py --workdir=/tmp/ablate \\
        [--seeds=3] [--only=default,frame_loss_only] [--config.sampler_training.num_epochs=1]

Stages 1-2 run once in WORKDIR/base (or are reused from there); every variant then trains its own
sampler (stage 3) from the same recognizer and pseudo labels once per seed
(sampler_training.seed = config.seed + i: the sampler's initialisation, data order and selection
noise), in WORKDIR/<variant>/seed<i>, and is evaluated on every test video; seed 0 of every variant
runs first, then seed 1, and so on. Per-video results (top-1 correct, evidence hit, from
evaluation's eval/per_video.jsonl) go to seed<i>/per_video.npz, so a stopped sweep
resumes where it was (a finished seed is not retrained; an unfinished one resumes from its
checkpoint). After every seed, WORKDIR/ablation.md (and .json,
.png) shows mean ± std over seeds per variant and K and, against `default`, the paired difference
with a 95% interval from a bootstrap over test videos and seeds (seed i of a variant is paired
with seed i of `default`: same initialisation and data order).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from typing import Any

import numpy as np

from nsnet_jax.config_checks import with_overrides
from nsnet_jax.evaluation.intervals import METRICS, paired_bootstrap, per_video_metric

log = logging.getLogger("nsnet_jax")

# name -> config overrides (dotted paths); every variant changes one choice of the default.
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "frame_loss_only": {"loss.video_weight": 0.0},
    "video_loss_only": {"loss.frame_weight": 0.0},
    "nonsalient_uniform": {"loss.nonsalient": "uniform"},
    "nonsalient_complement": {"loss.nonsalient": "complement"},
    "no_nonsalient_term": {"loss.nonsalient_weight": 0.0},
    "pseudo_rank": {"pseudo_label.rule": "rank"},
    "pseudo_threshold": {"pseudo_label.rule": "threshold"},
    "pseudo_correct": {"pseudo_label.rule": "correct"},
    "pseudo_soft": {"pseudo_label.rule": "soft"},
    "fusion_beta_0": {"model.sampler.fusion_beta": 0.0},
    "fusion_beta_2": {"model.sampler.fusion_beta": 2.0},
    "fusion_product": {"model.sampler.fusion": "product"},
    "fusion_rank": {"model.sampler.fusion": "rank"},
    "temporal_conv1d": {"model.sampler.temporal": "conv1d"},
    "temporal_transformer": {"model.sampler.temporal": "transformer"},
    "selection_perturbed": {"selection.train_mode": "perturbed", "selection.num_samples": 20},
    "selection_perturbed_first_order": {
        "selection.train_mode": "perturbed",
        "selection.num_samples": 20,
        "selection.perturbed_estimator": "first_order",
    },
    "selection_gumbel": {"selection.train_mode": "gumbel"},
    "selection_sinkhorn": {"selection.train_mode": "sinkhorn"},
    "joint_finetune": {"sampler_training.train_recognizer": True},
}
REFERENCE = "default"


def variant_config(base: Any, overrides: dict[str, Any]) -> Any:
    return with_overrides(base, {"stage": "all", **overrides})


def run(
    config: Any, workdir: str, only: list[str] | None = None, seeds: int = 3
) -> list[dict[str, Any]]:
    """Trains and evaluates every (variant, seed) not yet done; returns the table's rows."""
    from nsnet_jax.config_fields import pretrain_parts
    from nsnet_jax.evaluation.evaluate import per_video_results
    from nsnet_jax.pipeline_run import train_and_evaluate

    names = only or list(VARIANTS)
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        raise ValueError(f"unknown ablation variants {unknown}; choose from {list(VARIANTS)}")
    if seeds < 1:
        raise ValueError(f"--seeds={seeds} must be >= 1")
    if REFERENCE not in names:  # the paired differences need it
        names = [REFERENCE, *names]
    base_dir = os.path.join(workdir, "base")
    shared = ("pretrain",) * bool(pretrain_parts(config)) + ("recognizer", "pseudo_labels")
    for stage in shared:
        summary = train_and_evaluate(variant_config(config, {"stage": stage}), base_dir)
        if summary.get(stage, {}).get("preempted"):
            log.warning("ablation stopped (preempted) in the shared %s stage", stage)
            return []
    results: dict[str, list[dict[str, np.ndarray]]] = {}
    rows: list[dict[str, Any]] = []
    bootstraps: dict = {}
    for seed in range(seeds):  # seed-major: a stopped sweep has every variant at some seeds
        for name in names:
            sdir = os.path.join(workdir, name, f"seed{seed}")
            path = os.path.join(sdir, "per_video.npz")
            if not os.path.exists(path):
                for stage in shared:
                    if not os.path.exists(os.path.join(sdir, stage)):
                        os.makedirs(sdir, exist_ok=True)
                        shutil.copytree(os.path.join(base_dir, stage), os.path.join(sdir, stage))
                log.info("ablation %s seed %d: %s", name, seed, VARIANTS[name] or "(defaults)")
                # the sampler stage's own seed: the shared recognizer's fields stay unchanged
                seed_field = {"sampler_training.seed": config.seed + seed}
                vconfig = variant_config(config, {**VARIANTS[name], **seed_field})
                summary = train_and_evaluate(vconfig, sdir)  # stages 1-2 are the copied base
                if summary.get("sampler", {}).get("preempted"):
                    log.warning("ablation stopped (preempted) at %s seed %d", name, seed)
                    return rows
                _save(path, per_video_results(vconfig, sdir)["nsnet"])
            results.setdefault(name, []).append(_load(path))
            rows = summarize(results, bootstraps)
            _write(rows, workdir)  # after every seed, so a long sweep keeps what it has
    print(markdown(rows), flush=True)
    return rows


# ---- per-video evaluation ------------------------------------------------------------------------


def _save(path: str, result: dict[str, np.ndarray]) -> None:
    tmp = path + ".tmp.npz"
    np.savez(tmp, **result)
    os.replace(tmp, path)  # a killed sweep never leaves a half-written result


def _load(path: str) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        result = {key: data[key] for key in data.files}
    order = np.argsort(result["video_id"], kind="stable")  # pair by video id, not input order
    return {key: v[order] for key, v in result.items()}


# ---- statistics ----------------------------------------------------------------------------------


def summarize(
    results: dict[str, list[dict[str, np.ndarray]]], cache: dict | None = None
) -> list[dict[str, Any]]:
    """One row per (variant, K): mean and std over seeds and the paired difference to `default`.

    `cache` keeps each paired bootstrap by (variant, metric, K, paired seeds): the sweep rewrites
    the table after every seed, and redoing all of them took ~30 s each time with 21 variants.
    """
    cache = {} if cache is None else cache
    rows = []
    any_result = next(iter(results.values()))[0]
    ks = sorted(int(key.split("_")[1]) for key in any_result if key.startswith("correct_"))
    reference = results.get(REFERENCE, [])
    for name, per_seed in results.items():
        for k in ks:
            row: dict[str, Any] = {"variant": name, "overrides": VARIANTS[name], "k": k}
            row["seeds"] = len(per_seed)
            for metric in METRICS:
                values = [per_video_metric(r, metric, k) for r in per_seed]
                if all(np.isnan(v).all() for v in values):
                    row.update({metric: None, f"{metric}_std": None, f"{metric}_per_seed": None})
                    continue
                per_seed_means = [float(np.nanmean(v)) for v in values]
                row[metric] = float(np.mean(per_seed_means))
                row[f"{metric}_std"] = (
                    float(np.std(per_seed_means, ddof=1)) if len(values) > 1 else 0.0
                )
                row[f"{metric}_per_seed"] = per_seed_means
                pairs = min(len(per_seed), len(reference))
                if name != REFERENCE and pairs:
                    for a, b in zip(per_seed[:pairs], reference[:pairs], strict=True):
                        if not np.array_equal(a["video_id"], b["video_id"]):
                            raise ValueError(
                                f"{name} and {REFERENCE} were evaluated on other videos"
                            )
                    key = (name, metric, k, pairs)
                    if key not in cache:
                        ref_values = [per_video_metric(r, metric, k) for r in reference[:pairs]]
                        cache[key] = paired_bootstrap(
                            np.stack(values[:pairs]) - np.stack(ref_values)
                        )
                    mean, lo, hi = cache[key]
                    row[f"{metric}_diff"] = {"mean": mean, "ci95": [lo, hi], "paired_seeds": pairs}
            rows.append(row)
    return rows


# ---- outputs -------------------------------------------------------------------------------------


def _write(rows: list[dict[str, Any]], workdir: str) -> None:
    with open(os.path.join(workdir, "ablation.json"), "w") as f:
        json.dump(rows, f, indent=1)
    with open(os.path.join(workdir, "ablation.md"), "w") as f:
        f.write(markdown(rows) + "\n")
    plot(rows, os.path.join(workdir, "ablation.png"))


def _cell(row: dict | None, metric: str, scale: float, digits: int) -> tuple[str, str]:
    if row is None or row.get(metric) is None:
        return "-", "-"
    value = f"{scale * row[metric]:.{digits}f} ± {scale * row[f'{metric}_std']:.{digits}f}"
    d = row.get(f"{metric}_diff")
    if d is None:
        return value, "-"
    lo, hi = d["ci95"]
    return (
        value,
        f"{scale * d['mean']:+.{digits}f} [{scale * lo:+.{digits}f}, {scale * hi:+.{digits}f}]",
    )


def markdown(rows: list[dict[str, Any]]) -> str:
    ks = sorted({r["k"] for r in rows})
    head = "| variant | change | seeds | " + " | ".join(
        f"top-1 K={k} (%) | Δ top-1 K={k} (pp) | recall K={k} | Δ recall K={k}" for k in ks
    )
    lines = [head + " |", "|---|---|---|" + "---|---|---|---|" * len(ks)]
    for name in dict.fromkeys(r["variant"] for r in rows):
        by_k = {r["k"]: r for r in rows if r["variant"] == name}
        change = ", ".join(f"{k}={v}" for k, v in VARIANTS[name].items()) or "paper defaults"
        cells = []
        for k in ks:
            cells.extend(_cell(by_k.get(k), "top1", 100.0, 1))
            cells.extend(_cell(by_k.get(k), "evidence_recall", 1.0, 3))
        seeds = max(r["seeds"] for r in by_k.values())
        lines.append(f"| {name} | {change} | {seeds} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: str) -> None:
    """Mean ± std over seeds per variant: top-1 and evidence recall, one marker per K."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r["variant"] for r in rows))
    ks = sorted({r["k"] for r in rows})
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.32 * len(names) + 1.5), sharey=True)
    for ax, metric, label in zip(axes, METRICS, ("top-1 (%)", "evidence recall"), strict=True):
        scale = 100.0 if metric == "top1" else 1.0
        for j, k in enumerate(ks):
            y, x, err = [], [], []
            for i, name in enumerate(names):
                r = next((r for r in rows if r["variant"] == name and r["k"] == k), None)
                if r is not None and r.get(metric) is not None:
                    y.append(i + (j - (len(ks) - 1) / 2) * 0.2)
                    x.append(scale * r[metric])
                    err.append(scale * r[f"{metric}_std"])
            ax.errorbar(x, y, xerr=err, fmt="o", ms=4, capsize=2, label=f"K={k}")
        ax.set_xlabel(f"{label}, mean ± std over seeds")
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(names)), names)
    axes[0].invert_yaxis()
    axes[1].legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(config: Any, workdir: str, argv: list[str]) -> None:
    import jax
    from absl import flags

    from nsnet_jax import locking

    with locking.workdir_lock(workdir, enabled=jax.process_index() == 0):
        run(config, workdir, flags.FLAGS.only, flags.FLAGS.seeds)


def _define_flags() -> None:
    from absl import flags

    flags.DEFINE_list("only", None, f"Variants to run (default: all of {list(VARIANTS)}).")
    flags.DEFINE_integer("seeds", 3, "Seeds of the sampler stage per variant.")


if __name__ == "__main__":
    from nsnet_jax import cli

    cli.run(main, workdir="required", define_extra=_define_flags)
