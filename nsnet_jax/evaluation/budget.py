"""A GMACs budget for early exit: pick the threshold on held-out training videos, never on test.

salient_fashion has no validation split, so the held-out videos are the first
`eval.early_exit_holdout` videos of `data.train_split`, read in order without augmentation.
(Training still sees them unless the train split excludes them: a caveat the report states.)
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


def holdout_prefix_logits(
    config: Any,
    scores_and_prefix: Callable[[dict[str, np.ndarray]], np.ndarray],
    batch_size: int,
) -> np.ndarray:
    """Prefix logits [N, K_max, C] of the held-out slice of the TRAINING split.

    `scores_and_prefix(host_batch)` runs the sampler and the prefixes on one host batch.
    """
    want = int(config.eval.early_exit_holdout)
    batches, _ = pipeline.create_dataset(
        config.data, config.data.train_split, train=False,
        global_batch_size=batch_size, seed=config.seed,
    )  # fmt: skip
    out, have = [], 0
    for host in batches:
        keep = host["mask"] > 0
        out.append(scores_and_prefix(host)[keep])
        have += int(keep.sum())
        if have >= want:
            break
    return np.concatenate(out)[:want]
