"""Do the sampler's two heads agree? A label-free check that the attention head is not inverted.

The attention head a[t] learns only through the video loss, which has a swapped solution: a on
the non-salient frames, so z+ pools frames without evidence (L_sal stays at chance) and z- pools
the evidence, which the video head calls background (L_ns reaches 0). The frame head, trained on
pseudo labels, is unaffected, but the fused score s_f + beta*a then ranks the evidence last. Seen
on salient_fashion (docs/troubleshooting.md): a held-out run whose attention top-1 agreed with the
frame head's on 0.2% of test videos reached an evidence recall of 0.40 at K=2, where the frame
head alone ranked at 0.99.

Evaluation reports, at the model's K, the share of each video's top-K frames that both heads pick
(`topk_overlap`; a random attention gives K/T, the `chance` beside it) and, with evidence, each
head's own evidence recall. An overlap below chance is logged as a warning with the way out.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh

from nsnet_jax.evaluation import metrics
from nsnet_jax.models.nsnet import NSNet
from nsnet_jax.sharding import batch_sharding, host_local

log = logging.getLogger("nsnet_jax")


def make_heads_fn(model: NSNet, mesh: Mesh) -> Callable[[Any, jax.Array], dict[str, np.ndarray]]:
    """f(variables, sampler_frames) -> this process's rows of the frame head's and attention
    head's logits [B, T] (jitted; batch-sharded over the mesh like the scores)."""

    @functools.partial(jax.jit, out_shardings=batch_sharding(mesh))
    def heads(variables, sampler_frames):
        out = model.apply(variables, sampler_frames, method=NSNet.sample)
        return {"frame": out["frame_logits"], "attention": out["attn_logits"]}

    def local(variables, sampler_frames):
        return {k: host_local(v, mesh) for k, v in heads(variables, sampler_frames).items()}

    return local


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def topk_overlap(frame: np.ndarray, attention: np.ndarray, k: int) -> np.ndarray:
    """Per video, the share of the top-k frames by `frame` that are also top-k by `attention`."""
    a, b = _top_k(frame, k), _top_k(attention, k)
    return (a[:, :, None] == b[:, None, :]).any(axis=2).mean(axis=1)


def summary(
    frame: np.ndarray, attention: np.ndarray, k: int, evidence: np.ndarray | None = None
) -> dict[str, Any]:
    """The heads' agreement over every video of the split (logits [N, T]); recalls with evidence."""
    out: dict[str, Any] = {
        "k": k,
        "topk_overlap": round(float(topk_overlap(frame, attention, k).mean()), 4),
        "chance": round(k / frame.shape[1], 4),
    }
    if evidence is not None:
        out["frame_head_recall"] = round(metrics.evidence_recall(_top_k(frame, k), evidence), 4)
        out["attention_recall"] = round(metrics.evidence_recall(_top_k(attention, k), evidence), 4)
    return out


def inverted(heads: dict[str, Any]) -> bool:
    return heads["topk_overlap"] < heads["chance"]


def warning_text(heads: dict[str, Any]) -> str:
    return (
        f"the sampler's attention head disagrees with its frame head: they share "
        f"{heads['topk_overlap']:.1%} of each video's top-{heads['k']} frames, below the "
        f"{heads['chance']:.1%} of a random attention, so the video loss settled on its swapped "
        "solution and the fused score ranks salient frames low; retrain the sampler stage with "
        "another --config.sampler_training.seed, or with --config.loss.nonsalient=uniform "
        "(docs/troubleshooting.md#the-attention-head-is-inverted)"
    )


def attention_used(config: Any) -> bool:
    """Whether the attention head is trained (video loss) and moves the fused score. Recipes that
    rank with the frame head alone (`configs/salient_fashion_lookalike.py`: video_weight 0,
    fusion_beta 0) leave it untrained, so its disagreement means nothing there."""
    m = config.model.sampler
    return (m.fusion == "product" or m.fusion_beta > 0) and config.loss.video_weight > 0


def warns(heads: dict[str, Any]) -> bool:
    """Inverted, and used (`attention_used`, recorded in the summary by evaluation)."""
    return inverted(heads) and heads.get("attention_used", True)


def check(heads: dict[str, Any], config: Any) -> None:
    """Logs the warning when the attention head is inverted and the fused score uses it."""
    if warns({**heads, "attention_used": attention_used(config)}):
        log.warning("%s", warning_text(heads))
