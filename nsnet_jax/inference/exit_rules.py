"""Early exit on NSNet's ranking, on host arrays: stop adding frames once the recognizer is sure.

Input: `prefix_logits` [B, K_max, C], row j the video logits after the j+1 best-scored frames
(`prefix[:, j]` is NSNet-(j+1)'s prediction: see `early_exit_eval.prefix_logits`). An exit rule
turns each prefix into a confidence; a video exits at the first prefix whose confidence is strictly
above the threshold, else uses all K_max frames. Strict, so threshold 1.0 never exits early (a
float32 softmax can round to exactly 1) and threshold 0 always exits after one frame.

Rules: `margin` (single-label, the default: the largest softmax probability minus the second),
`max_prob` (the largest softmax probability) and `stable` (multi-label: the recognizer's softmax
spreads mass over several true classes, so a high max is not the signal; 1 - total variation
between this prefix's distribution and the previous one's, the first compared with the uniform
distribution: exit once another frame no longer changes the class ranking much). `margin` beat
`max_prob` on salient_fashion at both GMACs budgets measured (docs/early_exit.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

RULES = ("margin", "max_prob", "stable")


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, np.float64)
    z = np.exp(z - z.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)


def rule_for(multi_label: bool, choice: str = "") -> str:
    """The exit rule: `choice` (eval.early_exit_rule) when given, else `stable` for multi-label
    datasets and `margin` for single-label ones."""
    if choice:
        if choice not in RULES:
            raise ValueError(f"early exit rule {choice!r} is not one of {list(RULES)}")
        return choice
    return "stable" if multi_label else "margin"


def config_rule(config: Any) -> str:
    """A config's rule: eval.early_exit_rule, else `rule_for` its labels."""
    choice = str(config.eval.get("early_exit_rule", "") or "") if "eval" in config else ""
    return rule_for(bool(config.data.multi_label), choice)


def confidences(prefix_logits: np.ndarray, rule: str) -> np.ndarray:
    """[B, K_max] confidence of each prefix under `rule`."""
    probs = softmax(prefix_logits)
    if rule == "max_prob":
        return probs.max(-1)
    if rule == "margin":
        top2 = np.sort(probs, -1)[..., -2:]
        return top2[..., 1] - top2[..., 0]
    if rule == "stable":
        prev = np.concatenate([np.full_like(probs[:, :1], 1.0 / probs.shape[-1]), probs[:, :-1]], 1)
        return 1.0 - 0.5 * np.abs(probs - prev).sum(-1)
    raise ValueError(f"early exit rule {rule!r} is not one of {list(RULES)}")


def frames_used(conf: np.ndarray, threshold: float) -> np.ndarray:
    """[B] frames each video uses: 1 + the first prefix with conf > threshold, else K_max."""
    above = conf > threshold
    return np.where(above.any(1), above.argmax(1) + 1, conf.shape[1]).astype(np.int32)


def apply_exit(
    prefix_logits: np.ndarray, threshold: float, rule: str = "max_prob"
) -> tuple[np.ndarray, np.ndarray]:
    """(frames used [B], logits at exit [B, C]) for one threshold."""
    used = frames_used(confidences(prefix_logits, rule), threshold)
    return used, prefix_logits[np.arange(len(used)), used - 1]


def exit_by_prefix(
    recognize: Callable[[np.ndarray, int], np.ndarray],
    batch: int,
    k_max: int,
    threshold: float,
    rule: str = "max_prob",
) -> dict[str, np.ndarray]:
    """Early exit that runs each prefix only for the videos still undecided (predict's loop).

    `recognize(rows, j)` returns the logits [len(rows), C] of prefix j (NSNet-j's call: the j
    best-scored frames in temporal order) for those videos. Prefix j runs for the videos whose
    prefixes 1..j-1 were all at or below the threshold. Returns `prefix` [B, K_max, C] (NaN where
    a video had already exited), `frames_used` [B] and `logits` [B, C] at exit: the decision is
    `apply_exit`'s on these prefixes, so for the same logits it is evaluation's, bit for bit.
    """
    prefix = None
    active = np.arange(batch)
    for j in range(1, k_max + 1):
        logits = np.asarray(recognize(active, j))
        if prefix is None:
            prefix = np.full((batch, k_max, logits.shape[-1]), np.nan, logits.dtype)
        prefix[active, j - 1] = logits
        conf = confidences(prefix[active, :j], rule)[:, -1]
        active = active[~(conf > threshold)]
        if not len(active):
            break
    used, logits = apply_exit(prefix, threshold, rule)
    return {"prefix": prefix, "frames_used": used, "logits": logits}


def gmacs_table(
    k_max: int, sampler_gmacs: float, frame_gmacs: float, known: dict[int, float] | None = None
) -> np.ndarray:
    """[K_max] GMACs of a video that uses j+1 frames: the sampler on all T plus j+1 recognizer
    frames; `known` (fixed-K NSNet's own counts) wins where given, so the rows agree exactly."""
    known = known or {}
    return np.array([known.get(j, sampler_gmacs + j * frame_gmacs) for j in range(1, k_max + 1)])


def gmacs_table_from_counts(gmacs_by_k: dict[int, dict[str, Any]], k_max: int) -> np.ndarray:
    """`gmacs_table` from `costs.flops.count_gmacs` at each evaluated K (its `video_gmacs` kept)."""
    any_k = next(iter(gmacs_by_k.values()))
    known = {k: g["video_gmacs"] for k, g in gmacs_by_k.items()}
    sampler, frame = any_k["sampler_gmacs"], any_k["recognizer_gmacs_per_frame"]
    return gmacs_table(k_max, sampler, frame, known)


def video_gmacs(used: np.ndarray, table: np.ndarray) -> np.ndarray:
    """[B] GMACs per video from the frames each used and `gmacs_table`."""
    return np.asarray(table, np.float64)[used - 1]


def parse_thresholds(text: str) -> list[float]:
    """'0.5,0.9,0.99' -> [0.5, 0.9, 0.99]; '' -> [] (early exit off)."""
    return [float(x) for x in text.replace(" ", "").split(",") if x]
