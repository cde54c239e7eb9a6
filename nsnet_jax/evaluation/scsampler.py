"""SCSampler in the evaluation harness: its head is fitted as evaluation starts, on train videos.

The head (evaluation/samplers.py) reads the trained sampler backbone's per-frame features (the
`NSNet.embed` features the sampler's own context and heads read), so it needs no new training
stage: `eval.scsampler_videos` (> 0 switches it on) training videos, unaugmented, their video
labels only. Its GMACs are counted as the whole sampler's (backbone on T frames; its linear head
replaces the sampler's temporal context and heads, so this slightly over-counts it).
"""

from __future__ import annotations

import logging
from typing import Any

import jax
import numpy as np

from nsnet_jax.evaluation import samplers
from nsnet_jax.input_pipeline import pipeline
from nsnet_jax.models.nsnet import NSNet

log = logging.getLogger("nsnet_jax")


def _embed_fn(model: NSNet, variables: Any):
    host_vars = jax.device_get(variables)  # one device, whatever the evaluation mesh
    embed = jax.jit(lambda v, x: model.apply(v, x, method=NSNet.embed))
    return lambda frames: np.asarray(embed(host_vars, frames), np.float32)


def fit_head(config: Any, model: NSNet, variables: Any) -> dict[str, np.ndarray]:
    """The saliency head fitted on the first eval.scsampler_videos videos of data.train_split."""
    want = int(config.eval.get("scsampler_videos", 0))
    embed = _embed_fn(model, variables)
    batches, _ = pipeline.create_dataset(
        config.data, config.data.train_split, train=False, views=("sampler",),
        global_batch_size=config.eval_batch_size, seed=config.seed,
        process_index=0, process_count=1,
    )  # fmt: skip
    feats, labels, have = [], [], 0
    for host in batches:
        keep = host["mask"] > 0
        feats.append(embed(host["sampler_frames"])[keep])
        labels.append(host["labels"][keep])
        have += int(keep.sum())
        if have >= want:
            break
    log.info("scsampler: fitting its head on %d training videos", min(have, want))
    return samplers.fit_saliency_head(np.concatenate(feats)[:want], np.concatenate(labels)[:want])


def make_select(config: Any, model: NSNet, variables: Any):
    """The `METHODS` select function of SCSampler for this model (fits the head once)."""
    head = fit_head(config, model, variables)
    embed = _embed_fn(model, variables)

    def select(scores, evidence, rng, k, sampler_frames=None):
        return samplers.saliency_indices(samplers.saliency_logits(head, embed(sampler_frames)), k)

    return select
