"""The config contract: every field checked before any work, with errors naming field and fix.

Each set of choices is owned by the module that implements it (backbones by the registry, fusions
and temporal heads by the sampler, selection modes by selection, pseudo-label rules and non-salient
forms by the losses, optimizers by optim, init formats by pretrained); this module only collects
them. The checks run in Python before anything is traced, so nobody has to decode an XLA error.
"""

from __future__ import annotations

import logging
from typing import Any

from nsnet_jax import config_fields
from nsnet_jax.contracts import check_frames, eval_ks  # noqa: F401 - re-exported
from nsnet_jax.inference.exit_rules import RULES as EXIT_RULES
from nsnet_jax.models.layers import DEPTHWISE_IMPLS, SPATIAL_POOLS
from nsnet_jax.models.nsnet import DTYPES
from nsnet_jax.models.recognizer import AGGREGATIONS
from nsnet_jax.models.registry import BACKBONES
from nsnet_jax.models.sampler import FUSIONS, TEMPORAL_MODES
from nsnet_jax.models.selection import PERTURBED_ESTIMATORS, TRAIN_MODES
from nsnet_jax.pretrained.loading import FORMATS as PRETRAINED_FORMATS
from nsnet_jax.train import STAGE_ORDER
from nsnet_jax.train.losses import NONSALIENT_FORMS, PSEUDO_LABEL_RULES
from nsnet_jax.train.optim import OPTIMIZERS

INIT_FORMATS = ("",) + PRETRAINED_FORMATS  # "" trains the backbone from scratch

# dotted config field -> allowed values
CHOICES: dict[str, tuple[str, ...]] = {
    "stage": STAGE_ORDER + ("all",),
    "data.sampler_cache_augment": ("host", "step"),
    "model.dtype": tuple(DTYPES),
    "model.depthwise_impl": DEPTHWISE_IMPLS,
    "model.sampler.backbone": tuple(sorted(BACKBONES)),
    "model.sampler.temporal": TEMPORAL_MODES,
    "model.sampler.fusion": FUSIONS,
    "model.sampler.spatial_pool": SPATIAL_POOLS,
    "model.recognizer.backbone": tuple(sorted(BACKBONES)),
    "model.recognizer.aggregation": AGGREGATIONS,
    "model.recognizer.spatial_pool": SPATIAL_POOLS,
    "pseudo_label.rule": PSEUDO_LABEL_RULES,
    "loss.nonsalient": NONSALIENT_FORMS,
    "selection.train_mode": TRAIN_MODES,
    "selection.perturbed_estimator": PERTURBED_ESTIMATORS,
    "model.sampler.init_from.format": INIT_FORMATS,
    "model.recognizer.init_from.format": INIT_FORMATS,
    "recognizer_training.optimizer": OPTIMIZERS,
    "sampler_training.optimizer": OPTIMIZERS,
}

# dotted config field -> (lowest allowed value, whether the lowest value itself is allowed)
BOUNDS: dict[str, tuple[float, bool]] = {
    "batch_size": (1, True),
    "pretrain.num_train": (1, True),
    "pretrain.num_test": (1, True),
    "pretrain.num_epochs": (0, False),
    "pretrain.batch_size": (1, True),
    "pretrain.learning_rate": (0, False),
    "pretrain.weight_decay": (0, True),
    "pretrain.warmup_steps": (0, True),
    "eval_batch_size": (1, True),
    "log_every_steps": (1, True),
    "checkpoint_every_steps": (1, True),
    "keep_checkpoints": (1, True),
    "data.num_classes": (1, True),
    "data.num_frames": (1, True),
    "data.sampler_size": (1, True),
    "data.recognizer_size": (1, True),
    "data.num_threads": (1, True),
    "data.prefetch": (0, True),
    "model.sampler.width": (0, False),
    "model.recognizer.width": (0, False),
    "model.recognizer.mlp_dim": (1, True),
    "model.recognizer.dropout_rate": (0, True),
    "pseudo_label.threshold": (0, True),
    "loss.frame_weight": (0, True),
    "loss.video_weight": (0, True),
    "loss.nonsalient_weight": (0, True),
    "loss.pos_weight": (0, False),
    "selection.num_samples": (1, True),
    "selection.sigma": (0, False),
    "selection.temperature": (0, False),
    "selection.sinkhorn_epsilon": (0, False),
    "selection.sinkhorn_iters": (1, True),
    "selection.recognizer_loss_weight": (0, True),
    "recognizer_training.best_frame_weight": (0, True),
    "eval.timing_repeats": (1, True),
    "eval.early_exit_budget_gmacs": (0, True),
    "eval.early_exit_holdout": (1, True),
    "eval.scsampler_videos": (0, True),
    **{
        f"{stage}.{field}": bound
        for stage in ("recognizer_training", "sampler_training")
        for field, bound in (
            ("learning_rate", (0, True)),
            ("warmup_steps", (0, True)),
            ("momentum", (0, True)),
            ("weight_decay", (0, True)),
            ("grad_clip", (0, True)),
        )
    },
}


def _get(config: Any, dotted: str) -> Any:
    value = config
    for part in dotted.split("."):
        value = value[part]
    return value


def with_overrides(config: Any, overrides: dict[str, Any]) -> Any:
    """A copy of `config` with dotted fields set ({"model.num_select": 4}); unknown fields fail."""
    config = config.copy_and_resolve_references()
    with config.unlocked():
        for dotted, value in overrides.items():
            *parents, leaf = dotted.split(".")
            node = config
            for p in parents:
                node = node[p]
            if leaf not in node:
                raise KeyError(f"config override {dotted!r}: no such config field")
            node[leaf] = value
    return config


def check_choice(field: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"config.{field}={value!r} is not allowed; choose one of {list(allowed)}")


def check_bound(field: str, value: Any, low: float, inclusive: bool) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and (value >= low if inclusive else value > low)
    if not ok:
        rel = ">=" if inclusive else ">"
        raise ValueError(f"config.{field}={value!r} must be a number {rel} {low}")


def validate_config(config: Any) -> None:
    """Every enumerated switch, every numeric bound, and the numbers that must agree."""
    for field, allowed in CHOICES.items():
        try:
            value = _get(config, field)
        except (KeyError, AttributeError):
            continue  # a config without that section (e.g. FLOPs-only) need not carry it
        check_choice(field, value, allowed)
    for field, (low, inclusive) in BOUNDS.items():
        try:
            value = _get(config, field)
        except (KeyError, AttributeError):
            continue
        check_bound(field, value, low, inclusive)
    k, t = config.model.num_select, config.data.num_frames
    if not (isinstance(k, int) and isinstance(t, int) and 1 <= k <= t):
        raise ValueError(
            f"config.model.num_select={k!r} must be an int in [1, config.data.num_frames={t!r}]"
        )
    if (
        "pseudo_label" in config
        and config.pseudo_label.rule == "maxpool_share"
        and config.model.recognizer.aggregation != "maxpool_mlp"
    ):
        raise ValueError(
            "config.pseudo_label.rule='maxpool_share' reads the recognizer's max-pool, but "
            f"model.recognizer.aggregation={config.model.recognizer.aggregation!r}: set it to "
            "'maxpool_mlp' or pick another pseudo_label.rule"
        )
    if "pseudo_label" in config:
        own_k, own_from = config.pseudo_label.own_top_k, config.pseudo_label.own_from
        if not (isinstance(own_k, int) and 0 <= own_k <= t):
            raise ValueError(
                f"config.pseudo_label.own_top_k={own_k!r} must be an int in [0, "
                f"config.data.num_frames={t}] (0 turns self-training off)"
            )
        if not (isinstance(own_from, (int, float)) and 0 <= own_from <= 1):
            raise ValueError(
                f"config.pseudo_label.own_from={own_from!r} must be a fraction of the sampler "
                "stage in [0, 1]"
            )
    kernel = config.model.sampler.temporal_kernel
    if not (isinstance(kernel, int) and kernel >= 1 and kernel % 2 == 1):
        raise ValueError(
            f"config.model.sampler.temporal_kernel={kernel!r} must be an odd int >= 1 (the frame "
            "itself and as many neighbours on each side)"
        )
    layers = config.model.sampler.temporal_layers
    if not (isinstance(layers, int) and layers >= 1):
        raise ValueError(f"config.model.sampler.temporal_layers={layers!r} must be an int >= 1")
    heads = config.model.sampler.transformer_heads
    if config.model.sampler.temporal == "transformer" and heads < 1:
        raise ValueError(f"config.model.sampler.transformer_heads={heads!r} must be >= 1")
    if "eval" in config:
        config_fields.eval_ks(config)
        _check_holdout(config)
        rule = str(config.eval.get("early_exit_rule", "") or "")
        if rule and rule not in EXIT_RULES:
            raise ValueError(f"config.eval.early_exit_rule={rule!r}: use one of {list(EXIT_RULES)}")
    if "pretrain" in config:
        _check_pretrain(config)
    _check_frozen_backbones(config)
    _check_feature_cache(config)
    for stage in ("recognizer_training", "sampler_training"):
        if stage in config:
            tc = config[stage]
            if tc.num_steps <= 0 and not tc.num_epochs > 0:
                raise ValueError(
                    f"config.{stage}: set num_steps > 0 or num_epochs > 0 "
                    f"(got num_steps={tc.num_steps}, num_epochs={tc.num_epochs})"
                )
            config_fields.parse_multipliers(tc.lr_multipliers, f"{stage}.lr_multipliers")


def _check_holdout(config: Any) -> None:
    """The early-exit budget's held-out split must not share videos with training."""
    held = str(config.eval.get("early_exit_holdout_split", "") or "")
    if not held:
        return
    from nsnet_jax.evaluation import budget

    if budget.overlap(held, str(config.data.train_split)):
        raise ValueError(
            f"config.eval.early_exit_holdout_split={held!r} shares videos with "
            f"config.data.train_split={config.data.train_split!r}: hold out rows training does "
            "not read, e.g. 'train[:1000]' with data.train_split='train[1000:]'"
        )


def _check_pretrain(config: Any) -> None:
    names = config_fields.pretrain_parts(config)  # raises on an unknown part
    if config.stage == "pretrain" and not names:
        raise ValueError(
            "config.stage='pretrain' needs config.pretrain.stills_variant (e.g. 'lookalike')"
        )
    if names:
        from nsnet_jax.input_pipeline import stills

        stills.variant_config(config.pretrain.stills_variant)  # raises on an unknown variant
        config_fields.pretrain_epochs(config, names)  # raises on a malformed part_epochs
        pc = config.pretrain
        if pc.num_train < pc.batch_size:
            raise ValueError(
                f"config.pretrain.num_train={pc.num_train} is smaller than one batch "
                f"(config.pretrain.batch_size={pc.batch_size})"
            )
        if config.init_from.path:
            raise ValueError(
                f"config.init_from.path={config.init_from.path!r} would overwrite the backbones "
                "that stage pretrain trains; clear one of init_from.path and "
                "pretrain.stills_variant"
            )
    for part in names:
        if config.model[part].init_from.format:
            raise ValueError(
                f"config.model.{part}.init_from.format={config.model[part].init_from.format!r} "
                f"and config.pretrain.parts={config.pretrain.parts!r} both set its backbone's "
                f"start; drop {part!r} from pretrain.parts or clear init_from.format"
            )


def _check_frozen_backbones(config: Any) -> None:
    """A frozen backbone with nothing loaded is a random-feature ablation at best: say so."""
    pretrained = config_fields.pretrain_parts(config)
    for part in ("sampler", "recognizer"):
        m = config.model[part]
        if not m.freeze_backbone:
            continue
        if part in pretrained or m.init_from.format or config.init_from.path:
            continue
        logging.getLogger(__name__).warning(
            "config.model.%s.freeze_backbone=True but nothing loads that backbone's weights, so "
            "its random features stay fixed: set config.pretrain.stills_variant (with %r in "
            "pretrain.parts), config.model.%s.init_from or config.init_from.path, unless a "
            "random-feature ablation is meant",
            part, part, part,
        )  # fmt: skip


def _check_feature_cache(config: Any) -> None:
    """The cache replaces the sampler's frames: nothing else in the stage may need them."""
    if not config.sampler_training.feature_cache:
        return
    views = config.sampler_training.feature_cache_views
    if not isinstance(views, int) or views < 1:
        raise ValueError(f"sampler_training.feature_cache_views={views!r}: expected an int >= 1")
    if views > 1 and not config.data.augment:
        raise ValueError(
            f"sampler_training.feature_cache_views={views} stores augmented views, but "
            "data.augment=False would make them all the same: set feature_cache_views=1 or "
            "data.augment=True"
        )
    if not config.model.sampler.freeze_backbone:
        raise ValueError(
            "sampler_training.feature_cache=True stores the sampler backbone's features once, "
            "which is only right for a fixed backbone: set model.sampler.freeze_backbone=True or "
            "sampler_training.feature_cache=False"
        )
    if config.sampler_training.train_recognizer or config.selection.train_mode != "none":
        raise ValueError(
            "sampler_training.feature_cache=True trains on stored features only, but "
            f"sampler_training.train_recognizer={config.sampler_training.train_recognizer} / "
            f"selection.train_mode={config.selection.train_mode!r} runs the recognizer on the "
            "selected frames in the sampler stage: set feature_cache=False, or train_recognizer="
            "False and selection.train_mode='none'"
        )
