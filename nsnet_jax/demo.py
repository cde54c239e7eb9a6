"""The main job: build salient_fashion if needed, train every stage, evaluate, draw three figures.

    python -m nsnet_jax.demo --workdir=/tmp/nsnet_demo [--config.x=y ...]

Figures in the workdir: `accuracy_vs_gmacs.png` (each method's accuracy against its GMACs per video
at K = 1, 2, 4), `selections.png` (test videos: every candidate frame with the sampler's score,
the frames NSNet selects and the ground-truth evidence frames) and `worst_failures.png` (NSNet's
most confident wrong answers among the videos oracle-K gets right, from eval/per_video.jsonl).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from typing import Any

import numpy as np

log = logging.getLogger("nsnet_jax")
DEFAULT_CONFIG = "configs/salient_fashion.py"  # the installed copy's outside a checkout (cli.run)


def ensure_dataset(config: Any) -> None:
    """Builds the configured salient_fashion dataset into config.data.data_dir if it is missing."""
    import tensorflow_datasets as tfds

    import nsnet_jax.input_pipeline  # noqa: F401 - registers the builders
    from nsnet_jax.input_pipeline import build

    builder = tfds.builder(config.data.name, data_dir=config.data.data_dir or None)
    if builder.is_prepared():
        log.info("dataset %s found in %s", config.data.name, builder.data_dir)
        return
    # Two demos sharing a data_dir: the second stops at once, naming the build that runs.
    with build.build_lock(builder, config.data.data_dir or "the default data_dir"):
        if builder.is_prepared():  # finished by another build meanwhile
            return
        build.remove_stale_incomplete(builder)
        log.info(
            "building %s in %s (about 2 minutes on 2 cores)", config.data.name, builder.data_dir
        )
        start = time.time()
        builder.download_and_prepare()
    log.info("built %s in %.0f s", config.data.name, time.time() - start)


def plot_accuracy_vs_gmacs(
    results: dict[str, Any], path: str, dataset: str = "salient_fashion"
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.2))
    styles = {"nsnet": "o-", "uniform": "s--", "random": "^--", "oracle": "d:", "all": "*",
              "mgsampler": "v--", "scsampler": "P--"}  # fmt: skip
    for method, style in styles.items():
        rows = sorted((r for r in results["rows"] if r["method"] == method), key=lambda r: r["k"])
        if not rows:
            continue
        x = [r["gmacs"] * 1e3 for r in rows]
        y = [100 * r["top1"] for r in rows]
        ax.plot(x, y, style, label=method, markersize=9 if method == "all" else 6)
        for r, xi, yi in zip(rows, x, y, strict=True):
            ax.annotate(f"K={r['k']}", (xi, yi), textcoords="offset points", xytext=(4, -10),
                        fontsize=7)  # fmt: skip
    exit_rows = results.get("early_exit", {}).get("rows", [])
    if exit_rows:  # the threshold sweep: a curve beside fixed-K NSNet
        rows = sorted(exit_rows, key=lambda r: r["gmacs"])
        x, y = [r["gmacs"] * 1e3 for r in rows], [100 * r["top1"] for r in rows]
        ax.plot(x, y, "x-", label=f"early exit (K<={rows[0]['k']})")
        for r, xi, yi in zip(rows, x, y, strict=True):
            ax.annotate(f"{r['threshold']:g}", (xi, yi), textcoords="offset points",
                        xytext=(4, 4), fontsize=6)  # fmt: skip
    ax.set_xlabel("MMACs per video")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title(f"{dataset} {results['split']} ({results['num_videos']} videos)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_selections(config: Any, workdir: str, path: str, num_videos: int = 4) -> None:
    """The sampler's scores on a few test videos, with its top-K and the true evidence marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nsnet_jax.inference.jitted import make_scores_fn
    from nsnet_jax.input_pipeline import pipeline
    from nsnet_jax.models.nsnet import build_model
    from nsnet_jax.models.selection import topk_indices
    from nsnet_jax.train import checkpointing

    model = build_model(config)
    variables = checkpointing.restore_variables(os.path.join(workdir, "sampler", "final"))
    batches, meta = pipeline.create_dataset(
        config.data, config.data.eval_split, train=False, global_batch_size=num_videos,
        seed=0, process_index=0, process_count=1,
    )  # fmt: skip
    batch = next(batches)
    scores = np.asarray(make_scores_fn(model)(variables, batch["sampler_frames"]))
    k = config.model.num_select
    chosen = np.asarray(topk_indices(scores, k))
    t = scores.shape[1]
    fig, axes = plt.subplots(num_videos, t, figsize=(t * 0.9, num_videos * 1.25))
    for v in range(num_videos):
        label = meta.class_names[int(batch["label"][v])]
        for i in range(t):
            ax = axes[v, i]
            ax.imshow(batch["frames"][v, i])
            ax.set_xticks([])
            ax.set_yticks([])
            selected = i in chosen[v]
            evidence = bool(batch["evidence"][v, i])
            color = "red" if selected else ("limegreen" if evidence else "none")
            for spine in ax.spines.values():
                spine.set_edgecolor(color)
                spine.set_linewidth(3 if color != "none" else 0)
            title = f"{scores[v, i]:.2f}" + (" E" if evidence else "")
            ax.set_title(title, fontsize=6, color="green" if evidence else "black", pad=2)
        axes[v, 0].set_ylabel(label, fontsize=7)
    fig.suptitle(
        f"sampler score per frame; red box: NSNet's top-{k}; 'E' (green): ground-truth evidence",
        fontsize=8,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def worst_failures(per_video: list[dict[str, Any]], k: int, n: int) -> list[dict[str, Any]]:
    """NSNet's most confident wrong answers at K among videos the oracle-K gets right."""
    oracle_right = {
        x["video_id"]
        for x in per_video
        if x["method"] == "oracle" and x["k"] == k and x["top5"][0][0] in x["labels"]
    }
    wrong = [
        x
        for x in per_video
        if x["method"] == "nsnet" and x["k"] == k and x["top5"][0][0] not in x["labels"]
        and x["video_id"] in oracle_right
    ]  # fmt: skip
    return sorted(wrong, key=lambda x: -x["top5"][0][1])[:n]


def plot_worst_failures(workdir: str, path: str, k: int, class_names: list[str], n: int = 6) -> int:
    """Sampler scores of the worst NSNet failures (oracle right): selected red, evidence green."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(os.path.join(workdir, "eval", "per_video.jsonl")) as f:
        lines = [json.loads(x) for x in f]
    worst = worst_failures(lines, k, n)
    if not worst:
        return 0
    fig, axes = plt.subplots(len(worst), 1, figsize=(7, 1.3 * len(worst)), squeeze=False)
    for ax, x in zip(axes[:, 0], worst, strict=True):
        t = np.arange(len(x["sampler_scores"]))
        colors = ["red" if i in x["selected"] else "0.7" for i in t]
        ax.bar(t, x["sampler_scores"], color=colors)
        for e in x.get("evidence", []):
            ax.axvspan(e - 0.5, e + 0.5, color="limegreen", alpha=0.3)
        true = ", ".join(class_names[c] for c in x["labels"])
        pred, prob = class_names[x["top5"][0][0]], x["top5"][0][1]
        ax.set_title(f"{x['video_id']}: true {true}, NSNet-{k} says {pred} ({prob:.2f})",
                     fontsize=7)  # fmt: skip
        ax.set_xticks(t)
        ax.tick_params(labelsize=6)
    fig.suptitle("worst NSNet failures where the oracle was right: sampler score per frame; "
                 "red: selected, green: evidence", fontsize=7)  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return len(worst)


def run(config: Any, workdir: str, validate: bool = True) -> dict[str, Any]:
    """All stages on `config` in `workdir`, then the figures; `validate=False`: already done."""
    from nsnet_jax.pipeline_run import train_and_evaluate

    ensure_dataset(config)
    start = time.time()
    summaries = train_and_evaluate(config, workdir, validate=validate)
    results = summaries.get("eval")
    if results is None or "rows" not in results:  # preempted, or config.stage named another stage
        log.info("no evaluation in this run (stages run: %s): no figures", ", ".join(summaries))
        return summaries
    plot_accuracy_vs_gmacs(
        results, os.path.join(workdir, "accuracy_vs_gmacs.png"), config.data.name
    )
    plot_selections(config, workdir, os.path.join(workdir, "selections.png"))
    names = json.loads(open(os.path.join(workdir, "run_info.json")).read()).get("class_names")
    names = names or [str(i) for i in range(config.data.num_classes)]
    failures = os.path.join(workdir, "worst_failures.png")
    plot_worst_failures(workdir, failures, config.model.num_select, names)
    log.info("figures: %s/accuracy_vs_gmacs.png, %s/selections.png", workdir, workdir)
    log.info("total %.1f minutes", (time.time() - start) / 60)
    return summaries


def main(config: Any, workdir: str, argv: list[str]) -> None:
    import jax

    from nsnet_jax import locking
    from nsnet_jax.evaluation.evaluate import markdown_table

    with locking.workdir_lock(workdir, enabled=jax.process_index() == 0):
        summaries = run(config, workdir, validate=False)  # cli.run validated it
    preempted = any(s.get("preempted") for s in summaries.values() if isinstance(s, dict))
    if preempted:  # as main does: 143 after SIGTERM, 130 after Ctrl-C; rerun to resume
        from nsnet_jax.train import checkpointing

        sys.exit(128 + (checkpointing.PreemptionFlag.received or signal.SIGTERM))
    if "rows" in summaries.get("eval", {}):
        print(markdown_table(summaries["eval"]))
    print(json.dumps({"workdir": workdir, "done": True}))


if __name__ == "__main__":
    from nsnet_jax import cli

    cli.run(
        main, workdir="optional", default_config=DEFAULT_CONFIG, default_workdir="/tmp/nsnet_demo"
    )
