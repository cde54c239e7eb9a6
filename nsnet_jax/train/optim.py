"""Optimizers for the training stages: SGD or AdamW, warmup + cosine, per-module lr multipliers.

A stage trains a subset of the parameters (the recognizer in stage 1, the sampler in stage 3, both
when fine-tuning jointly); the rest get `set_to_zero` and keep no optimizer state worth the name.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import optax
from flax import traverse_util

from nsnet_jax.config_fields import parse_multipliers

OPTIMIZERS = ("sgd", "adamw")


def num_train_steps(train_config: Any, steps_per_epoch: int) -> int:
    """`num_steps` if set (> 0), else `num_epochs` x steps per epoch (at least 1)."""
    if train_config.num_steps > 0:
        return int(train_config.num_steps)
    return max(1, math.ceil(train_config.num_epochs * steps_per_epoch))


def learning_rate_schedule(train_config: Any, total_steps: int) -> optax.Schedule:
    warmup = min(int(train_config.warmup_steps), max(total_steps - 1, 0))
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=train_config.learning_rate,
        warmup_steps=warmup,
        decay_steps=max(total_steps, warmup + 1),
        end_value=0.0,
    )


def _path(key_path: tuple) -> str:
    return "/".join(str(k) for k in key_path)


def param_labels(params: Any, trainable: Sequence[str], multipliers: Mapping[str, float]) -> Any:
    """Each leaf's label: `frozen`, or the lr multiplier of the longest matching path prefix."""
    flat = traverse_util.flatten_dict(params)
    labels = {}
    for key in flat:
        path = _path(key)
        if not any(path == p or path.startswith(p + "/") for p in trainable):
            labels[key] = "frozen"
            continue
        best, mult = -1, 1.0
        for prefix, value in multipliers.items():
            if (path == prefix or path.startswith(prefix + "/")) and len(prefix) > best:
                best, mult = len(prefix), float(value)
        labels[key] = f"lr_x{mult:g}"
    return traverse_util.unflatten_dict(labels)


def _decay_mask(params: Any) -> Any:
    """Weight decay on kernels only, not on biases or BatchNorm/LayerNorm scales."""
    return jax.tree.map(lambda x: x.ndim > 1, params)


def build_optimizer(
    train_config: Any,
    params: Any,
    trainable: Sequence[str],
    total_steps: int,
    multipliers: Mapping[str, float] | None = None,
) -> optax.GradientTransformation:
    """The stage's optimizer over the whole parameter tree; only `trainable` prefixes move.

    `multipliers`: path prefix -> lr factor, parsed already (else from `lr_multipliers`).
    """
    if train_config.optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer={train_config.optimizer!r} is not one of {list(OPTIMIZERS)}")
    schedule = learning_rate_schedule(train_config, total_steps)
    if multipliers is None:
        multipliers = parse_multipliers(train_config.lr_multipliers)
    labels = param_labels(params, trainable, multipliers)
    used = set(jax.tree.leaves(labels)) - {"frozen"}
    if not used:
        raise ValueError(f"no parameters match the trainable prefixes {list(trainable)}")

    def scaled(mult: float) -> optax.GradientTransformation:
        lr = lambda step: schedule(step) * mult  # noqa: E731
        if train_config.optimizer == "sgd":
            return optax.chain(
                optax.add_decayed_weights(train_config.weight_decay, _decay_mask),
                optax.sgd(lr, momentum=train_config.momentum, nesterov=False),
            )
        return optax.adamw(lr, weight_decay=train_config.weight_decay, mask=_decay_mask)

    transforms = {"frozen": optax.set_to_zero()}
    for label in used:
        transforms[label] = scaled(float(label[len("lr_x") :]))
    chain = []
    if train_config.grad_clip > 0:
        chain.append(optax.clip_by_global_norm(train_config.grad_clip))
    chain.append(optax.multi_transform(transforms, labels))
    return optax.chain(*chain)
