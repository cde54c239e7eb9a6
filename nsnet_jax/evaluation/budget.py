"""A GMACs budget for early exit: pick the threshold on held-out training videos, never on test.

salient_fashion has no validation split. With `eval.early_exit_holdout_split` (e.g.
"train[:1000]", training on `data.train_split="train[1000:]"`) the threshold is picked on videos
training never saw; without it, on the first `eval.early_exit_holdout` videos of
`data.train_split`, which training did see (results.json says which, and a warning says so).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from nsnet_jax.inference import exit_rules
from nsnet_jax.input_pipeline import pipeline

log = logging.getLogger("nsnet_jax")


def choose_threshold(
    prefix_logits: np.ndarray,
    target_gmacs: float,
    *,
    gmacs: np.ndarray,
    rule: str = "max_prob",
) -> float:
    """The largest threshold whose mean GMACs per video on these videos is <= target_gmacs.

    `gmacs` is `exit_rules.gmacs_table(K_max, ...)`.
    A larger threshold never exits earlier, so the largest affordable one uses the most frames the
    budget allows. Exits change only at the prefixes' confidences, so those are the candidates.
    Below one frame per video the budget cannot be met: threshold 0 (NSNet-1), with a warning.
    """
    conf = exit_rules.confidences(prefix_logits, rule)
    candidates = np.unique(np.concatenate([conf.ravel(), [0.0, 1.0]]))
    best = None
    for t in candidates:  # ascending: GMACs grow with t
        used = exit_rules.frames_used(conf, float(t))
        if exit_rules.video_gmacs(used, gmacs).mean() <= target_gmacs:
            best = float(t)
        else:
            break
    if best is None:
        log.warning("early exit: budget %.4g GMACs is below one frame per video", target_gmacs)
        return 0.0
    return best


def holdout_split(config: Any) -> tuple[str, int | None, bool]:
    """(split, how many of its videos (None: all), whether training saw them)."""
    own = str(config.eval.get("early_exit_holdout_split", "") or "").strip()
    if own:
        return own, None, False
    return str(config.data.train_split), int(config.eval.early_exit_holdout), True


def row_range(split: str) -> tuple[str, int | None, int | None] | None:
    """'train[100:200]' -> ('train', 100, 200); 'train' -> ('train', None, None); None for
    percent or other slices (their overlap is not checked)."""
    name, sep, rest = split.partition("[")
    if not sep:
        return name.strip(), None, None
    start, colon, stop = rest.rstrip().removesuffix("]").partition(":")
    if not colon:
        return None
    try:
        return (
            name.strip(),
            int(start) if start.strip() else None,
            int(stop) if stop.strip() else None,
        )
    except ValueError:
        return None


def overlap(a: str, b: str) -> bool:
    """Whether two row slices of one split share a video (False when that is not known)."""
    ra, rb = row_range(a), row_range(b)
    if ra is None or rb is None or ra[0] != rb[0]:
        return False
    if any(x is not None and x < 0 for r in (ra, rb) for x in r[1:]):
        return False  # counted from the end: the split's length decides
    lo = max(ra[1] or 0, rb[1] or 0)
    hi = min([x for x in (ra[2], rb[2]) if x is not None], default=float("inf"))
    return lo < hi


def holdout_prefix_logits(
    config: Any,
    scores_and_prefix: Callable[[dict[str, np.ndarray]], np.ndarray],
    batch_size: int,
) -> np.ndarray:
    """Prefix logits [N, K_max, C] of the held-out training videos (`holdout_split`).

    `scores_and_prefix(host_batch)` runs the sampler and the prefixes on one host batch.
    """
    split, want, seen = holdout_split(config)
    if seen:
        log.warning(
            "early exit: the budget's threshold is picked on %d videos of %s that training saw; "
            "for videos it did not see, train on e.g. data.train_split='train[1000:]' and set "
            "eval.early_exit_holdout_split='train[:1000]'",
            want, split,
        )  # fmt: skip
    batches, _ = pipeline.create_dataset(
        config.data, split, train=False, global_batch_size=batch_size, seed=config.seed,
    )  # fmt: skip
    out, have = [], 0
    for host in batches:
        keep = host["mask"] > 0
        out.append(scores_and_prefix(host)[keep])
        have += int(keep.sum())
        if want is not None and have >= want:
            break
    return np.concatenate(out)[:want]
