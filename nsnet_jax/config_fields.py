"""A config's string-encoded fields, parsed once into the typed values the stages use.

Comma lists such as `eval.num_select='1,2,4'` or `pretrain.part_epochs='sampler=15'` keep a config
flat and its command line short. They are parsed here and nowhere else: `parse` builds `Settings`
once per run (the runner hands it to every stage) and validation calls the same parsers, so a bad
value fails before any work with an error naming the field and an example.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

# the two networks of NSNet: the parts a stage trains, pretrains or loads
NETWORKS = ("sampler", "recognizer")
# the config section holding each training stage's optimizer settings
TRAINING_SECTIONS = {"recognizer": "recognizer_training", "sampler": "sampler_training"}


@dataclasses.dataclass(frozen=True)
class Settings:
    """The parsed form of every string-encoded config field."""

    pretrain_parts: tuple[str, ...]  # pretrain.parts; () when stage pretrain is off
    pretrain_epochs: Mapping[str, float]  # per pretrained part: pretrain.part_epochs or num_epochs
    eval_ks: tuple[int, ...]  # eval.num_select, or (model.num_select,)
    lr_multipliers: Mapping[str, Mapping[str, float]]  # stage -> <stage>_training.lr_multipliers
    init_skip: tuple[str, ...]  # init_from.skip
    backbone_init_skip: Mapping[str, tuple[str, ...]]  # part -> model.<part>.init_from.skip


def parse(config: Any) -> Settings:
    """Every string-encoded field of `config`, parsed (and checked) once."""
    parts = pretrain_parts(config)
    return Settings(
        pretrain_parts=parts,
        pretrain_epochs=pretrain_epochs(config, parts),
        eval_ks=eval_ks(config) if "eval" in config else (),
        lr_multipliers={
            stage: lr_multipliers(config, stage)
            for stage, section in TRAINING_SECTIONS.items()
            if section in config
        },
        init_skip=split_globs(config.init_from.skip) if "init_from" in config else (),
        backbone_init_skip={
            part: split_globs(config.model[part].init_from.skip) for part in NETWORKS
        },
    )


def split_globs(spec: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in spec.split(",") if s.strip())


def parse_multipliers(
    spec: str, field: str = "lr_multipliers", example: str = "path/prefix=0.1"
) -> dict[str, float]:
    """'sampler/backbone=0.1,recognizer=0.5' -> {'sampler/backbone': 0.1, 'recognizer': 0.5}."""
    out = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        prefix, sep, value = item.partition("=")
        try:
            out[prefix.strip().strip("/")] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise ValueError(
                f"{field} item {item!r} must look like {example!r} (a name, '=', a number)"
            ) from None
    return out


def lr_multipliers(config: Any, stage: str) -> dict[str, float]:
    """`<stage>_training.lr_multipliers`: parameter path prefix -> learning-rate factor."""
    section = TRAINING_SECTIONS[stage]
    return parse_multipliers(config[section].lr_multipliers, f"{section}.lr_multipliers")


def pretrain_parts(config: Any) -> tuple[str, ...]:
    """The parts `pretrain.parts` names (validated), or () when the stage is off."""
    if "pretrain" not in config or not config.pretrain.stills_variant:
        return ()
    names = tuple(p.strip() for p in config.pretrain.parts.split(",") if p.strip())
    bad = [p for p in names if p not in NETWORKS]
    if bad or not names or len(set(names)) != len(names):
        raise ValueError(
            f"pretrain.parts={config.pretrain.parts!r}: expected a comma-separated subset of "
            f"{list(NETWORKS)}"
        )
    return names


def pretrain_epochs(config: Any, parts: tuple[str, ...]) -> dict[str, float]:
    """Each of `parts` (`pretrain_parts`) with its epochs: `pretrain.part_epochs` ("sampler=15"),
    else `pretrain.num_epochs`."""
    if not parts:
        return {}
    spec = config.pretrain.part_epochs
    by_part = parse_multipliers(spec, "pretrain.part_epochs", "sampler=15")
    if any(name not in NETWORKS or not epochs > 0 for name, epochs in by_part.items()):
        raise ValueError(
            f"pretrain.part_epochs={spec!r}: each item must look like 'sampler=15' with a part "
            f"of {list(NETWORKS)} and a number of epochs > 0"
        )
    return {part: by_part.get(part, config.pretrain.num_epochs) for part in parts}


def eval_ks(config: Any) -> tuple[int, ...]:
    """The K values evaluation reports: `eval.num_select` ("1,2,4"), or model.num_select."""
    spec = str(config.eval.num_select).strip()
    t = config.data.num_frames
    try:
        ks = [int(x) for x in spec.split(",") if x.strip()] if spec else [config.model.num_select]
    except ValueError:
        raise ValueError(
            f"config.eval.num_select={spec!r} must be comma-separated integers, e.g. '1,2,4'"
        ) from None
    for k in ks:
        if not 1 <= k <= t:
            raise ValueError(
                f"config.eval.num_select={spec!r} has K={k}, outside [1, data.num_frames={t}]"
            )
    return tuple(ks)
