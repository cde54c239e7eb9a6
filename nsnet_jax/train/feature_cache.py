"""Stage 3 on a frozen sampler backbone: its features of every training video, computed once.

With `model.sampler.freeze_backbone` the backbone is a fixed function of the frames, so every
epoch of the sampler stage decodes the same JPEGs and runs the same backbone again.
`sampler_training.feature_cache=True` runs it once over the training split (the un-augmented
frames, as the pseudo labels saw them) and trains the temporal context and heads on the stored
features [T, D] per video: the stage then costs one backbone pass (`feature_cache_views` > 1:
as many, the extra ones cropped and flipped as the training input would). Each process keeps and
shuffles only its own share of the split (memory N/P x V x T x D per host, no cross-host traffic);
batch `s` depends only on (seed, process, s), so a resumed stage continues exactly.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterator
from typing import Any

import jax
import numpy as np

from nsnet_jax.input_pipeline import pipeline
from nsnet_jax.models.nsnet import NSNet
from nsnet_jax.sharding import batch_sharding, host_local

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class FeatureCache:
    """This process's share of the training split, as the sampler stage's batches need it."""

    features: np.ndarray  # [n, V, T, D] the frozen backbone's output on V views of each video
    labels: np.ndarray  # [n, C] multi-hot
    label: np.ndarray  # [n]
    evidence: np.ndarray  # [n, T] ground truth where the dataset has it, else all False
    video_id: np.ndarray  # [n] bytes: the pseudo-label table's key
    num_examples: int  # the whole split's, over all processes: epochs are counted in it

    def steps_per_epoch(self, global_batch_size: int) -> int:
        """As the decoding input counts them: full global batches of the whole split."""
        return self.num_examples // global_batch_size


def extract(config: Any, model: NSNet, variables: dict, mesh, seed: int) -> FeatureCache:
    """`feature_cache_views` inference passes of the frozen sampler backbone over this process's
    training videos: the first un-augmented, the others cropped and flipped as in training."""
    num_views = int(config.sampler_training.feature_cache_views)
    sampler_vars = {c: {"sampler": variables[c]["sampler"]} for c in ("params", "batch_stats")}
    embed = jax.jit(lambda v, frames: model.apply(v, frames, method=NSNet.embed))
    sharding = batch_sharding(mesh)
    views, fields = [], {}
    start = time.monotonic()
    for view in range(num_views):
        batches, meta = pipeline.create_dataset(
            config.data, config.data.train_split, train=False,
            global_batch_size=config.eval_batch_size, seed=seed + view, views=("sampler",),
            augment=view > 0 and bool(config.data.augment),
        )  # fmt: skip
        features, labels, label, evidence, ids = [], [], [], [], []
        total = num_views * meta.steps_per_epoch
        every = max(1, total // 10)
        for i, host_batch in enumerate(batches):
            frames = pipeline.to_global({"sampler_frames": host_batch["sampler_frames"]}, sharding)
            out = host_local(embed(sampler_vars, frames["sampler_frames"]), mesh)
            keep = host_batch["mask"] > 0
            features.append(out[keep])
            labels.append(host_batch["labels"][keep])
            label.append(host_batch["label"][keep])
            evidence.append(host_batch["evidence"][keep])
            ids.append(np.asarray(host_batch["video_id"])[keep])
            done = view * meta.steps_per_epoch + i + 1
            if done % every == 0 or done == total:
                elapsed = time.monotonic() - start
                log.info(
                    "sampler feature cache: batch %d/%d (%d view(s)) (%.0f s, ETA %.0f s)",
                    done, total, num_views, elapsed, elapsed / done * (total - done),
                )  # fmt: skip
        views.append(np.concatenate(features))
        if view == 0:  # the same videos in the same order in every pass
            fields = dict(
                labels=np.concatenate(labels),
                label=np.concatenate(label),
                evidence=np.concatenate(evidence).astype(bool),
                video_id=np.concatenate(ids),
            )
    cache = FeatureCache(features=np.stack(views, axis=1), num_examples=meta.num_examples, **fields)
    log.info(
        "sampler feature cache: %d videos x %s %s features (%.1f MiB on this process) in %.0f s",
        len(cache.video_id), cache.features.shape[1:], cache.features.dtype,
        cache.features.nbytes / 2**20, time.monotonic() - start,
    )  # fmt: skip
    return cache


def batches(
    cache: FeatureCache, *, seed: int, global_batch_size: int, start_step: int = 0
) -> Iterator[dict[str, np.ndarray]]:
    """Endless local batches (global batch / processes) in a fresh permutation every epoch,
    each video as one of its views, drawn at random."""
    n, num_views = cache.features.shape[:2]
    local = global_batch_size // jax.process_count()
    if n < local:
        raise ValueError(
            f"sampler feature cache: this process holds {n} training videos, fewer than its "
            f"batch of {local}; lower config.batch_size"
        )
    rng_key = [seed, 1, jax.process_index()]  # not the decoding input's stream: [seed, 0, epoch]
    perms: dict[int, np.ndarray] = {}
    step = start_step
    while True:
        positions = np.arange(step * local, (step + 1) * local)
        epochs, offsets = np.divmod(positions, n)
        for e in set(epochs.tolist()) - set(perms):
            perms[e] = np.random.default_rng([*rng_key, e]).permutation(n)
        idx = np.array([perms[e][o] for e, o in zip(epochs.tolist(), offsets.tolist())])
        for e in [e for e in perms if e < epochs.min()]:
            del perms[e]
        view = np.random.default_rng([*rng_key, 2**31, step]).integers(0, num_views, local)
        yield {
            "sampler_features": cache.features[idx, view],
            "labels": cache.labels[idx],
            "label": cache.label[idx],
            "evidence": cache.evidence[idx],
            "mask": np.ones(local, np.float32),
            "video_id": cache.video_id[idx],
        }
        step += 1
