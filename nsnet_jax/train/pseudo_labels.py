"""The pseudo-label table: stage 2 scores every frame of the training split with the frozen
recognizer and writes one `pseudo_labels/part-<process>.npz` per process (per training video:
p_t[y] per frame, argmax correctness, maxpool share); stage 3 looks rows up by video id.
"""

from __future__ import annotations

import logging
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath

from nsnet_jax.input_pipeline import pipeline
from nsnet_jax.models.nsnet import NSNet
from nsnet_jax.sharding import batch_sharding, host_local
from nsnet_jax.train import losses
from nsnet_jax.train.step import pseudo_label_ratio

log = logging.getLogger("nsnet_jax")


class FrameScores(NamedTuple):
    """This process's training videos, scored frame by frame (per video: [T] each)."""

    ids: list[str]
    p_gt: np.ndarray
    correct: np.ndarray
    share: np.ndarray
    evidence: np.ndarray
    has_evidence: bool


def score_frames(config: Any, model: NSNet, variables: dict, mesh) -> FrameScores:
    """p_t[y], argmax correctness and (maxpool_mlp) pool share of every frame of every training
    video this process reads."""
    batches, meta = pipeline.create_dataset(
        config.data, config.data.train_split, train=False,
        global_batch_size=config.eval_batch_size, seed=config.seed, views=("recognizer",),
    )  # fmt: skip

    @jax.jit
    def frame_stats(variables, frames, labels):
        out = model.apply(variables, frames, method=NSNet.recognize)
        p_gt, correct = losses.ground_truth_stats(out["frame_logits"], labels)
        share = out.get("pool_share")
        share = jnp.zeros_like(p_gt) if share is None else losses.true_class_share(share, labels)
        return p_gt, correct, share

    ids, p_gts, corrects, shares, evidence = [], [], [], [], []
    sharding = batch_sharding(mesh)
    for host_batch in batches:
        batch = pipeline.to_global(host_batch, sharding)
        p_gt, correct, share = frame_stats(variables, batch["frames"], batch["labels"])
        keep = host_batch["mask"] > 0
        ids.extend(video_id_str(v) for v in np.asarray(host_batch["video_id"])[keep])
        p_gts.append(host_local(p_gt, mesh)[keep])
        corrects.append(host_local(correct, mesh)[keep])
        shares.append(host_local(share, mesh)[keep])
        evidence.append(host_batch["evidence"][keep])
    return FrameScores(
        ids,
        np.concatenate(p_gts),
        np.concatenate(corrects),
        np.concatenate(shares),
        np.concatenate(evidence).astype(bool),
        meta.has_evidence,
    )


def save_part(workdir: str, scores: FrameScores) -> None:
    """This process's part of the table; the others write theirs beside it."""
    out_dir = epath.Path(workdir) / "pseudo_labels"
    out_dir.mkdir(parents=True, exist_ok=True)
    ids, p_gt, correct, share = scores.ids, scores.p_gt, scores.correct, scores.share
    with (out_dir / f"part-{jax.process_index():05d}.npz").open("wb") as f:
        np.savez(f, video_id=np.asarray(ids, dtype=str), p_gt=p_gt, correct=correct, share=share)


def summarize(config: Any, table: PseudoLabelTable, scores: FrameScores) -> dict[str, Any]:
    """The stage's summary: the table's means, and where the dataset marks its evidence frames,
    how well the configured rule finds them (this process's videos)."""
    p_gt, correct, share, evidence = scores.p_gt, scores.correct, scores.share, scores.evidence
    on_evidence = config.pseudo_label.rule == "evidence"  # the sampler stage's substitution
    hard = np.asarray(
        losses.pseudo_labels(
            jnp.asarray(p_gt),
            jnp.asarray(evidence if on_evidence else correct),
            config.pseudo_label.rule,
            ratio=pseudo_label_ratio(config),
            threshold=config.pseudo_label.threshold,
            share=jnp.asarray(share),
        )  # fmt: skip
    )
    summary = {
        "videos": len(table.ids),
        "mean_p_true_class": float(table.p_gt.mean()),
        "frames_argmax_correct": float(table.correct.mean()),
        "positives_per_video": float(hard.sum(1).mean()),
    }
    if scores.has_evidence and evidence.any():  # how well the rule finds the true salient frames
        positive = hard > 0.5
        summary["pseudo_label_precision"] = float((positive & evidence).sum() / positive.sum())
        summary["pseudo_label_recall"] = float((positive & evidence).sum() / evidence.sum())
        log.info("pseudo labels vs ground-truth evidence (this process): %s", summary)
    return summary


def video_id_str(video_id: Any) -> str:
    return video_id.decode("utf-8") if isinstance(video_id, bytes) else str(video_id)


class PseudoLabelTable:
    def __init__(
        self, ids: np.ndarray, p_gt: np.ndarray, correct: np.ndarray, share: np.ndarray | None
    ) -> None:
        self.ids, self.p_gt, self.correct, self.share = ids, p_gt, correct, share
        self.row = {v: i for i, v in enumerate(ids.tolist())}

    def rows(self, video_ids: np.ndarray) -> list[int]:
        try:
            rows = [self.row[video_id_str(v)] for v in video_ids]
        except KeyError as e:
            raise KeyError(
                f"video {e.args[0]!r} has no pseudo labels: they were computed on another dataset "
                "or split. Delete workdir/pseudo_labels and rerun --config.stage=pseudo_labels"
            ) from None
        return rows


def load_pseudo_labels(workdir: str) -> PseudoLabelTable:
    parts = sorted((epath.Path(workdir) / "pseudo_labels").glob("part-*.npz"))
    if not parts:
        raise FileNotFoundError(
            f"no pseudo labels in {workdir}/pseudo_labels; run --config.stage=pseudo_labels first"
        )
    ids, p_gt, correct, share = [], [], [], []
    for part in parts:
        with part.open("rb") as f:
            data = np.load(f, allow_pickle=False)
            ids.append(data["video_id"])
            p_gt.append(data["p_gt"])
            correct.append(data["correct"])
            share.append(data["share"] if "share" in data else None)
    shares = None if any(s is None for s in share) else np.concatenate(share)
    return PseudoLabelTable(
        np.concatenate(ids), np.concatenate(p_gt), np.concatenate(correct), shares
    )
