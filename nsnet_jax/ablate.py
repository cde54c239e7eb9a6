"""Ablation sweep over the method's open choices, sharing one recognizer and one pseudo-label pass.

    python -m nsnet_jax.ablate --config=configs/salient_fashion.py --workdir=/tmp/ablate \\
        [--only=default,frame_only] [--config.sampler_training.num_epochs=1]

Stages 1-2 run once in WORKDIR/base (or are reused from there); every variant then trains its own
sampler (stage 3) from the same recognizer and pseudo labels, and is evaluated. One table,
WORKDIR/ablation.md (and .json), lists NSNet's accuracy and evidence recall per variant and K.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from typing import Any

from nsnet_jax.config_checks import with_overrides

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
    "selection_gumbel": {"selection.train_mode": "gumbel"},
    "joint_finetune": {"sampler_training.train_recognizer": True},
}


def variant_config(base: Any, overrides: dict[str, Any]) -> Any:
    return with_overrides(base, {"stage": "all", **overrides})


def run(config: Any, workdir: str, only: list[str] | None = None) -> list[dict[str, Any]]:
    from nsnet_jax.train.stages import train_and_evaluate

    names = only or list(VARIANTS)
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        raise ValueError(f"unknown ablation variants {unknown}; choose from {list(VARIANTS)}")
    base_dir = os.path.join(workdir, "base")
    for stage in ("recognizer", "pseudo_labels"):
        train_and_evaluate(variant_config(config, {"stage": stage}), base_dir)
    rows = []
    for name in names:
        vdir = os.path.join(workdir, name)
        for stage in ("recognizer", "pseudo_labels"):
            if not os.path.exists(os.path.join(vdir, stage)):
                os.makedirs(vdir, exist_ok=True)
                shutil.copytree(os.path.join(base_dir, stage), os.path.join(vdir, stage))
        log.info("ablation %s: %s", name, VARIANTS[name] or "(defaults)")
        summaries = train_and_evaluate(variant_config(config, VARIANTS[name]), vdir)
        for r in summaries["eval"]["rows"]:
            if r["method"] == "nsnet":
                rows.append({"variant": name, "overrides": VARIANTS[name], **r})
        table = _write(rows, workdir)  # after every variant, so a long sweep keeps what it has
    print(table, flush=True)
    return rows


def _write(rows: list[dict[str, Any]], workdir: str) -> str:
    with open(os.path.join(workdir, "ablation.json"), "w") as f:
        json.dump(rows, f, indent=1)
    table = markdown(rows)
    with open(os.path.join(workdir, "ablation.md"), "w") as f:
        f.write(table + "\n")
    return table


def markdown(rows: list[dict[str, Any]]) -> str:
    ks = sorted({r["k"] for r in rows})
    head = "| variant | change | " + " | ".join(f"top-1 K={k} (%) | recall K={k}" for k in ks)
    lines = [head + " |", "|---|---|" + "---|---|" * len(ks)]
    for name in dict.fromkeys(r["variant"] for r in rows):
        by_k = {r["k"]: r for r in rows if r["variant"] == name}
        change = ", ".join(f"{k}={v}" for k, v in VARIANTS[name].items()) or "paper defaults"
        cells = []
        for k in ks:
            r = by_k.get(k)
            recall = r["evidence_recall"] if r else None
            cells.append(f"{100 * r['top1']:.1f}" if r else "-")
            cells.append(f"{recall:.3f}" if recall is not None else "-")
        lines.append(f"| {name} | {change} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(config: Any, workdir: str, argv: list[str]) -> None:
    from absl import flags

    run(config, workdir, flags.FLAGS.only)


def _define_flags() -> None:
    from absl import flags

    flags.DEFINE_list("only", None, f"Variants to run (default: all of {list(VARIANTS)}).")


if __name__ == "__main__":
    from nsnet_jax import cli

    cli.run(main, workdir="required", define_extra=_define_flags)
