"""NSNet's objectives as pure functions of arrays (docs/method.md gives the formulas).

Labels are multi-hot [B, C] everywhere (single labels go through `to_multihot`), because ActivityNet
validation videos can carry several classes. All losses return a batch mean.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

PSEUDO_LABEL_RULES = (
    "rank", "threshold", "correct", "soft", "correct_and_rank", "maxpool_share", "evidence"
)  # fmt: skip
NONSALIENT_FORMS = ("background", "uniform", "complement")

# ---- labels -------------------------------------------------------------------------------------


def to_multihot(labels: jax.Array, num_classes: int) -> jax.Array:
    """int labels [B] -> one-hot [B, C]; multi-hot [B, C] passes through as float32."""
    labels = jnp.asarray(labels)
    if labels.ndim == 1:
        return jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
    if labels.ndim == 2 and labels.shape[-1] == num_classes:
        return labels.astype(jnp.float32)
    raise ValueError(
        f"labels must be int [batch] or multi-hot [batch, {num_classes}], got shape {labels.shape}"
    )


def ground_truth_stats(frame_logits: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Per frame: p_t[y] (the best of the video's labels) and whether argmax p_t is a label.

    frame_logits [B, T, C], labels multi-hot [B, C] -> p_gt [B, T], correct [B, T] bool.
    """
    probs = jax.nn.softmax(frame_logits.astype(jnp.float32), axis=-1)
    p_gt = jnp.max(jnp.where(labels[:, None, :] > 0, probs, 0.0), axis=-1)
    top = jnp.argmax(probs, axis=-1)
    correct = jnp.take_along_axis(labels, top, axis=-1) > 0
    return p_gt, correct


# ---- frame level: pseudo labels and the suppression BCE -----------------------------------------


def _rank_positive(p_gt: jax.Array, count: int) -> jax.Array:
    """The `count` frames of highest p_gt per video (ties to the earlier frame)."""
    order = jnp.argsort(-p_gt, axis=-1, stable=True)
    ranks = jnp.argsort(order, axis=-1, stable=True)
    return ranks < count


def true_class_share(pool_share: jax.Array, labels: jax.Array) -> jax.Array:
    """pool_share [B, T, C] (maxpool_mlp recognizer), labels multi-hot [B, C] -> [B, T]."""
    return jnp.max(jnp.where(labels[:, None, :] > 0, pool_share, 0.0), axis=-1)


def pseudo_labels(
    p_gt: jax.Array,
    correct: jax.Array,
    rule: str,
    *,
    ratio: float,
    threshold: float = 0.5,
    share: jax.Array | None = None,
) -> jax.Array:
    """Frame targets y_t in [0, 1], [B, T].

    rank: top ceil(ratio T) by p_gt; threshold: p_gt >= tau; correct: argmax is a label;
    soft: p_gt / max_t p_gt; correct_and_rank: both; maxpool_share: top ceil(ratio T) by `share`
    (`true_class_share`: what the frame gave the true class through a maxpool_mlp recognizer's
    pool, i.e. the frames its video decision used); evidence: the dataset's ground-truth evidence
    frames, which the sampler stage passes as `correct` (an upper bound that tells whether the
    pseudo labels or the sampler limit a run, not the method). A hard rule that marks no frame of a
    video marks its single best frame instead, so every video has a positive.
    """
    t = p_gt.shape[-1]
    if rule == "soft":
        return p_gt / jnp.maximum(p_gt.max(axis=-1, keepdims=True), 1e-12)
    count = max(1, math.ceil(ratio * t))
    if rule == "rank":
        hard = _rank_positive(p_gt, count)
    elif rule == "threshold":
        hard = p_gt >= threshold
    elif rule == "maxpool_share":
        if share is None:
            raise ValueError("pseudo_label.rule='maxpool_share' needs the frames' pool shares")
        hard = _rank_positive(share, count)
    elif rule in ("correct", "evidence"):
        hard = correct
    elif rule == "correct_and_rank":
        hard = correct & _rank_positive(p_gt, count)
    else:
        raise ValueError(f"pseudo_label.rule={rule!r} is not one of {list(PSEUDO_LABEL_RULES)}")
    best = jax.nn.one_hot(jnp.argmax(p_gt, axis=-1), t, dtype=bool)
    hard = jnp.where(hard.any(axis=-1, keepdims=True), hard, best)
    return hard.astype(jnp.float32)


def with_own_top_k(targets: jax.Array, scores: jax.Array, k: int) -> jax.Array:
    """targets [B, T] with the sampler's own k best-scored frames per video set to 1.

    Self-training: the recognizer's pseudo labels miss evidence frames that the sampler, which sees
    neighbouring frames, already ranks first; marking its own top k as positives (no gradient
    through the choice) keeps those frames up instead of pushing them down as non-salient.
    """
    own = _rank_positive(jax.lax.stop_gradient(scores), k)
    return jnp.maximum(targets, own.astype(targets.dtype))


def frame_loss(frame_logits: jax.Array, targets: jax.Array, pos_weight: float = 1.0) -> jax.Array:
    """-(1/T) sum_t [w+ y_t log s_t + (1 - y_t) log(1 - s_t)], averaged over the batch."""
    log_p = jax.nn.log_sigmoid(frame_logits)
    log_not_p = jax.nn.log_sigmoid(-frame_logits)
    per_frame = -(pos_weight * targets * log_p + (1.0 - targets) * log_not_p)
    return per_frame.mean()


# ---- video level: dual supervision --------------------------------------------------------------


def per_video_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Cross-entropy [...] against multi-hot labels spread evenly over their classes."""
    targets = labels / jnp.maximum(labels.sum(axis=-1, keepdims=True), 1e-12)
    return -(targets * jax.nn.log_softmax(logits, axis=-1)).sum(axis=-1)


def best_frame_cross_entropy(frame_logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Batch mean of min over frames of one frame's own cross-entropy, from `frame_logits`
    [B, K, C] (a frame's logits are the recognizer's prediction from that frame alone).

    Multiple-instance style: only the frame that already predicts the label best is pushed,
    so the recognizer learns to be sure from one good frame (early exit's first prefix), while
    frames without evidence are left alone.
    """
    per_frame = per_video_cross_entropy(frame_logits, labels[:, None, :])
    return per_frame.min(axis=1).mean()


def softmax_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Cross-entropy against multi-hot labels spread evenly over their classes; batch mean."""
    return per_video_cross_entropy(logits, labels).mean()


def video_loss(
    salient_logits: jax.Array,
    nonsalient_logits: jax.Array,
    labels: jax.Array,
    form: str,
    nonsalient_weight: float = 1.0,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """L_sal + lambda_ns L_ns on the attention-pooled salient / non-salient representations.

    background: logits have C+1 classes; z+ -> y, z- -> the extra class.
    uniform:    KL(U || softmax(W z-)) over the C classes.
    complement: -log(1 - sum_{c in y} softmax(W z-)_c).
    """
    num_classes = labels.shape[-1]
    if form == "background":
        if salient_logits.shape[-1] != num_classes + 1:
            raise ValueError(
                f"loss.nonsalient='background' needs {num_classes + 1} video logits "
                f"(classes + background), got {salient_logits.shape[-1]}"
            )
        sal_targets = jnp.pad(labels, ((0, 0), (0, 1)))
        background = jax.nn.one_hot(
            jnp.full(labels.shape[:1], num_classes), num_classes + 1, dtype=jnp.float32
        )
        l_sal = softmax_cross_entropy(salient_logits, sal_targets)
        l_ns = softmax_cross_entropy(nonsalient_logits, background)
    elif form in ("uniform", "complement"):
        l_sal = softmax_cross_entropy(salient_logits, labels)
        log_p = jax.nn.log_softmax(nonsalient_logits, axis=-1)
        if form == "uniform":
            l_ns = (-math.log(num_classes) - log_p.mean(axis=-1)).mean()
        else:
            p_true = (jnp.exp(log_p) * (labels > 0)).sum(axis=-1)
            l_ns = -jnp.log(jnp.clip(1.0 - p_true, 1e-6, 1.0)).mean()
    else:
        raise ValueError(
            f"loss.nonsalient={form!r} is not one of ['background', 'uniform', 'complement']"
        )
    total = l_sal + nonsalient_weight * l_ns
    return total, {"video_salient": l_sal, "video_nonsalient": l_ns}


def sampler_loss(
    outputs: dict[str, jax.Array],
    frame_targets: jax.Array,
    labels: jax.Array,
    *,
    frame_weight: float,
    video_weight: float,
    nonsalient: str,
    nonsalient_weight: float,
    pos_weight: float,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """L = lambda_f L_frame + lambda_v L_video, from the sampler's outputs."""
    l_frame = frame_loss(outputs["frame_logits"], frame_targets, pos_weight)
    l_video, parts = video_loss(
        outputs["salient_logits"],
        outputs["nonsalient_logits"],
        labels,
        nonsalient,
        nonsalient_weight,
    )
    total = frame_weight * l_frame + video_weight * l_video
    return total, {"frame": l_frame, "video": l_video, **parts}
