"""Where a run loses the evidence: the recognizer's frame ranking, its pseudo labels, the sampler.

    python -m nsnet_jax.diagnose --workdir=RUN [--ks=1,2,4]

Needs a dataset with ground-truth evidence frames (salient_fashion) and a finished recognizer stage.
It reads the run's config from RUN/config.json, scores every frame of both splits with the trained
recognizer and prints (and writes to RUN/diagnose.json):

- `recognizer_ranking`: evidence recall at K (a selected frame is evidence, as evaluation counts it)
  of the top-K frames by the recognizer's own per-frame scores on the evaluation split. `max_prob`
  needs no label: a sampler that ranked frames exactly as the recognizer does would reach it.
  `true_prob` and `maxpool_share` (maxpool_mlp recognizers: the positive part of the true class's
  logit that frame t contributes through the max-pool) use the label, as pseudo labels do.
- `pseudo_labels`: each pseudo_label.rule's targets on the training split against the evidence
  (precision, recall, and the share of videos where a target frame is evidence).
- `sampler`: the trained sampler's evidence recall from RUN/eval/results.json, next to uniform's.
- `share_recovered`: from RUN/eval/per_video.jsonl, the share of the uniform-K -> oracle-K top-1
  distance that NSNet-K recovers, with a 95% interval from a bootstrap over the test videos.

If the sampler sits at the label-free ceiling, a better sampler cannot help without a better
recognizer; if it sits far below even with `pseudo_label.rule=evidence` (the ground truth as
targets), its input or capacity is the limit (docs/results.md).
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from nsnet_jax import cli
from nsnet_jax.evaluation.metrics import evidence_recall
from nsnet_jax.train import losses

log = logging.getLogger("nsnet_jax")

HARD_RULES = ("rank", "threshold", "correct", "correct_and_rank")


def frame_scores(outputs: dict[str, jax.Array], labels: jax.Array) -> dict[str, jax.Array]:
    """Per-frame scores [B, T] from the recognizer's outputs on all T frames."""
    frame_logits = outputs["frame_logits"]
    probs = jax.nn.softmax(frame_logits.astype(jnp.float32), axis=-1)
    p_true, correct = losses.ground_truth_stats(frame_logits, labels)
    scores = {"max_prob": probs.max(axis=-1), "true_prob": p_true, "correct": correct}
    if "pool_share" in outputs:  # maxpool_mlp
        scores["maxpool_share"] = losses.true_class_share(outputs["pool_share"], labels)
    return scores


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def _recall(scores: np.ndarray, evidence: np.ndarray, k: int) -> float:
    return round(evidence_recall(top_k(scores, k), evidence), 3)


def target_quality(targets: np.ndarray, evidence: np.ndarray) -> dict[str, float]:
    """Precision and recall of hard targets against the evidence; share of videos with a hit."""
    positive, evidence = targets > 0.5, evidence.astype(bool)
    hits = (positive & evidence).sum()
    video_hit = (positive & evidence).any(axis=1)[evidence.any(axis=1)].mean()
    return {
        "precision": round(float(hits / max(positive.sum(), 1)), 3),
        "recall": round(float(hits / max(evidence.sum(), 1)), 3),
        "video_hit": round(float(video_hit), 3),
        "positives_per_video": round(float(positive.sum(axis=1).mean()), 2),
    }


def share_recovered(
    nsnet: np.ndarray, uniform: np.ndarray, oracle: np.ndarray, resamples: int = 2000
) -> dict[str, Any]:
    """(NSNet - uniform) / (oracle - uniform) top-1 from per-video hits, with a 95% bootstrap.

    None where the oracle is no better than uniform (no distance to recover).
    """

    def share(idx):
        gap = oracle[idx].mean() - uniform[idx].mean()
        return (nsnet[idx].mean() - uniform[idx].mean()) / gap if gap > 0 else np.nan

    rng = np.random.default_rng(0)
    draws = np.array([share(rng.integers(len(nsnet), size=len(nsnet))) for _ in range(resamples)])
    finite = draws[np.isfinite(draws)]
    low, high = np.percentile(finite, [2.5, 97.5]) if len(finite) else (np.nan, np.nan)
    point = share(np.arange(len(nsnet)))
    rounded = lambda x: round(float(x), 3) if np.isfinite(x) else None  # noqa: E731
    return {
        "nsnet": round(float(nsnet.mean()), 4),
        "uniform": round(float(uniform.mean()), 4),
        "oracle": round(float(oracle.mean()), 4),
        "share": rounded(point),
        "ci95": [rounded(low), rounded(high)],
    }


def _per_video_shares(config: Any, workdir: str, ks: tuple[int, ...]) -> dict[str, Any]:
    from nsnet_jax.evaluation.evaluate import per_video_results

    try:
        runs = per_video_results(config, workdir, ("nsnet", "uniform", "oracle"))
    except FileNotFoundError:  # evaluation ran without the baselines (eval.baselines=False)
        return {}
    if not all(np.array_equal(r["video_id"], runs["nsnet"]["video_id"]) for r in runs.values()):
        raise ValueError(f"{workdir}/eval/per_video*.jsonl: the methods cover different videos")
    return {
        str(k): share_recovered(*(runs[m][f"correct_{k}"].astype(float) for m in runs))
        for k in ks
        if f"correct_{k}" in runs["nsnet"]
    }


def _split_scores(config, score, split: str) -> dict[str, np.ndarray]:
    """`score(frames, labels)` (jitted once for both splits) over every video of `split`."""
    from nsnet_jax.input_pipeline import pipeline

    batches, meta = pipeline.create_dataset(
        config.data, split, train=False, global_batch_size=config.eval_batch_size,
        seed=config.seed, views=("recognizer",), process_index=0, process_count=1,
    )  # fmt: skip
    if not meta.has_evidence:
        raise ValueError(
            f"dataset {config.data.name!r} has no ground-truth evidence frames, so there is "
            "nothing to diagnose against; use salient_fashion (or a dataset with `evidence`)"
        )
    parts: dict[str, list[np.ndarray]] = {}
    for batch in batches:
        keep = batch["mask"] > 0
        out = score(jnp.asarray(batch["frames"]), jnp.asarray(batch["labels"], jnp.float32))
        for key, value in {**jax.device_get(out), "evidence": batch["evidence"]}.items():
            parts.setdefault(key, []).append(np.asarray(value)[keep])
    return {key: np.concatenate(value) for key, value in parts.items()}


def diagnose(workdir: str, ks: tuple[int, ...] = (1, 2, 4)) -> dict[str, Any]:
    from nsnet_jax.inference.trained import config_from_workdir
    from nsnet_jax.models.nsnet import NSNet, build_model
    from nsnet_jax.sharding import data_mesh
    from nsnet_jax.train.init import restore_stage_variables
    from nsnet_jax.train.step import pseudo_label_ratio

    config = config_from_workdir(workdir)
    model = build_model(config)
    variables = restore_stage_variables(
        config, workdir, model, data_mesh(jax.devices()[:1]), "recognizer",
        parts=("recognizer",),
    )  # fmt: skip
    score = jax.jit(
        lambda frames, labels: frame_scores(
            model.apply(variables, frames, method=NSNet.recognize), labels
        )
    )
    report: dict[str, Any] = {"workdir": workdir, "data": config.data.name}
    test = _split_scores(config, score, config.data.eval_split)
    names = [n for n in ("max_prob", "true_prob", "maxpool_share") if n in test]
    report["recognizer_ranking"] = {
        name: {str(k): _recall(test[name], test["evidence"], k) for k in ks} for name in names
    }
    train = _split_scores(config, score, config.data.train_split)
    p_true, correct = jnp.asarray(train["true_prob"]), jnp.asarray(train["correct"])
    share = train.get("maxpool_share")
    rules = {}
    for rule in HARD_RULES + (("maxpool_share",) if share is not None else ()):
        targets = losses.pseudo_labels(
            p_true, correct, rule, ratio=pseudo_label_ratio(config),
            threshold=config.pseudo_label.threshold,
            share=None if share is None else jnp.asarray(share),
        )  # fmt: skip
        rules[rule] = target_quality(np.asarray(targets), train["evidence"])
    report["pseudo_labels"] = {"configured": config.pseudo_label.rule, "rules": rules}
    results = os.path.join(workdir, "eval", "results.json")
    if os.path.exists(results):
        with open(results) as f:
            rows = json.load(f)["rows"]
        report["sampler"] = {
            f"{r['method']}-{r['k']}": r["evidence_recall"]
            for r in rows
            if r["method"] in ("nsnet", "uniform") and r["k"] in ks
        }
        shares = _per_video_shares(config, workdir, ks)
        if shares:
            report["share_recovered"] = shares
    with open(os.path.join(workdir, "diagnose.json"), "w") as f:
        json.dump(report, f, indent=1)
    return report


def format_report(report: dict[str, Any]) -> str:
    lines = [f"## {report['data']}: evidence recall at K of the recognizer's own frame ranking"]
    ranking = report["recognizer_ranking"]
    ks = list(next(iter(ranking.values())))
    lines += ["| score | " + " | ".join(f"K={k}" for k in ks) + " |", "|---" * (len(ks) + 1) + "|"]
    lines += [f"| {n} | " + " | ".join(str(v[k]) for k in ks) + " |" for n, v in ranking.items()]
    if "sampler" in report:
        lines += ["", "trained sampler / uniform: " + json.dumps(report["sampler"])]
    for k, s in report.get("share_recovered", {}).items():
        if s["share"] is None or None in s["ci95"]:
            lines.append(f"NSNet-{k}: oracle-{k} is no better than uniform-{k}, no distance")
            continue
        lines.append(
            f"NSNet-{k} recovers {s['share']:.0%} of the uniform-{k} -> oracle-{k} top-1 distance "
            f"(95% interval {s['ci95'][0]:.0%} to {s['ci95'][1]:.0%}): NSNet {s['nsnet']:.1%}, "
            f"uniform {s['uniform']:.1%}, oracle {s['oracle']:.1%}"
        )
    lines += ["", "## pseudo labels on the training split against the evidence"]
    lines += ["| rule | precision | recall | video hit | positives/video |", "|---" * 5 + "|"]
    for rule, q in report["pseudo_labels"]["rules"].items():
        mark = " (configured)" if rule == report["pseudo_labels"]["configured"] else ""
        lines.append(
            f"| {rule}{mark} | {q['precision']} | {q['recall']} | {q['video_hit']} | "
            f"{q['positives_per_video']} |"
        )
    return "\n".join(lines)


def main(config: Any, workdir: str, argv: list[str]) -> None:
    from absl import flags

    ks = tuple(int(k) for k in flags.FLAGS.ks)
    report = diagnose(workdir, ks)
    print(format_report(report))
    log.info("wrote %s", os.path.join(workdir, "diagnose.json"))


def _define_flags() -> None:
    from absl import flags

    flags.DEFINE_list("ks", ["1", "2", "4"], "K values of the recall columns.")


if __name__ == "__main__":
    cli.run(main, workdir="required", config_required=False, define_extra=_define_flags)
