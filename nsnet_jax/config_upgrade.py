"""Configs of workdirs written before a field existed, brought up to the current fields.

A workdir's `config.json` (and its stages' records) lack the fields added since it was written.
`upgrade` fills them in one place with the value that run used, so the code reads every field
directly; provenance treats a record without such a field as holding that value, so old workdirs
still resume. The value is configs/default.py's unless the default changed when the field came.
"""

from __future__ import annotations

from typing import Any

import ml_collections

from nsnet_jax.configs import default

# added after the first workdirs were written, in the order they came
_ADDED = (
    "selection.sinkhorn_epsilon",
    "selection.sinkhorn_iters",
    "selection.perturbed_estimator",
    "sampler_training.seed",
    "data.sampler_cache_dir",
    "data.sampler_cache_augment",
    "data.recognizer_train_frames",
    "model.sampler.temporal_kernel",
    "model.sampler.temporal_layers",
    "model.sampler.spatial_pool",
    "model.recognizer.spatial_pool",
    "model.sampler.freeze_backbone",
    "model.recognizer.freeze_backbone",
    "sampler_training.feature_cache",
    "sampler_training.feature_cache_views",
    "pseudo_label.own_top_k",
    "pseudo_label.own_from",
    "pretrain.stills_variant",
    "pretrain.parts",
    "pretrain.num_train",
    "pretrain.num_test",
    "pretrain.num_epochs",
    "pretrain.part_epochs",
    "pretrain.batch_size",
    "pretrain.learning_rate",
    "pretrain.weight_decay",
    "pretrain.warmup_steps",
    "eval.early_exit_thresholds",
    "eval.early_exit_budget_gmacs",
    "eval.early_exit_rule",
    "eval.early_exit_holdout",
    "eval.early_exit_holdout_split",
    "eval.mgsampler",
    "eval.scsampler_videos",
    "recognizer_training.best_frame_weight",
)
# where the field's arrival also changed the default: the value that gives the earlier behaviour
_EARLIER = {"selection.perturbed_estimator": "first_order"}


def _get(config: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        config = config[part]
    return config


def _added_fields() -> dict[str, Any]:
    defaults = default.get_config()
    return {f: _EARLIER[f] if f in _EARLIER else _get(defaults, f) for f in _ADDED}


# dotted field -> the value a config written before the field existed ran with
ADDED_FIELDS: dict[str, Any] = _added_fields()


def upgrade(config: Any) -> ml_collections.ConfigDict:
    """A copy of `config` with each ADDED_FIELDS field it lacks set to its earlier value."""
    config = ml_collections.ConfigDict(config).copy_and_resolve_references()
    with config.unlocked():
        for dotted, value in ADDED_FIELDS.items():
            *parents, leaf = dotted.split(".")
            node = config
            for p in parents:
                if p not in node:
                    node[p] = ml_collections.ConfigDict()
                node = node[p]
            if leaf not in node:
                node[leaf] = value
    return config
