"""A stage's starting variables: created sharded, then loaded from pretraining, converted
backbone weights or an earlier run; and the variables a finished stage left in `<stage>/final`.

Kept apart from the stages so that every consumer of trained weights (the later stages,
diagnose) loads them the same way.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import jax
from etils import epath

from nsnet_jax import config_fields
from nsnet_jax.config_fields import NETWORKS, Settings
from nsnet_jax.models.nsnet import NSNet, init_variables
from nsnet_jax.sharding import replicated
from nsnet_jax.train import checkpointing, pretrain

log = logging.getLogger("nsnet_jax")


def create_variables(
    config: Any,
    model: NSNet,
    mesh,
    seed: int | None = None,
    workdir: str | None = None,
    pretrained: tuple[str, ...] = NETWORKS,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """params + batch_stats, created directly with their (replicated) sharding; with `workdir`,
    the `pretrained` parts' backbones start from stage `pretrain`'s weights where it ran.
    `settings`: the runner's parsed config fields (parsed here when None)."""
    settings = config_fields.parse(config) if settings is None else settings

    def init(rng):
        return dict(init_variables(model, config, rng))

    rng = jax.random.key(config.seed if seed is None else seed)
    abstract = jax.eval_shape(init, rng)
    shardings = jax.tree.map(lambda _: replicated(mesh), abstract)
    variables = jax.jit(init, out_shardings=shardings)(rng)
    if workdir is not None:
        only = tuple(p for p in settings.pretrain_parts if p in pretrained)
        variables = _load_pretrain_stage(config, workdir, variables, mesh, only)
    return _apply_init_from(config, settings, variables, mesh)


def _load_pretrain_stage(
    config: Any, workdir: str, variables: dict, mesh, only: tuple[str, ...]
) -> dict:
    rep = replicated(mesh)
    done = epath.Path(workdir) / "pretrain" / "DONE.json"
    for part in only:
        path = pretrain.variables_dir(workdir, part)
        if not done.exists():  # a stage that died half-way may have left one part, unchecked
            raise FileNotFoundError(
                f"config.pretrain.parts names {part!r} but stage pretrain has not finished in "
                f"{workdir} ({done} is missing); run --config.stage=pretrain (or "
                "--config.stage=all) with this workdir first"
            )
        # only what the headless backbone has: a backbone that holds the video head (the
        # mean_logits aggregations) keeps that head's fresh init
        keep = pretrain.headless_shapes(config, part)
        target = {
            c: {k: v for k, v in variables[c][part]["backbone"].items() if k in keep[c]}
            for c in keep
        }
        target = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=rep), target
        )
        loaded = checkpointing.restore_variables(path, target)
        bad = [
            f"{jax.tree_util.keystr(k)}: config {want.shape} vs checkpoint {got.shape}"
            for (k, want), got in zip(
                jax.tree_util.tree_flatten_with_path(target)[0], jax.tree.leaves(loaded)
            )
            if tuple(want.shape) != tuple(got.shape)
        ]
        if bad:
            raise ValueError(
                f"{path} does not fit model.{part} (changed after stage pretrain ran?): "
                + "; ".join(bad[:5])
                + f". Move {workdir}/pretrain aside and rerun the stage"
            )
        variables = {
            c: {**tree, part: {**tree[part], "backbone": {**tree[part]["backbone"], **loaded[c]}}}
            if c in loaded
            else tree
            for c, tree in variables.items()
        }
        log.info("model.%s: backbone from stage pretrain (%s)", part, path)
    return variables


def _apply_init_from(config: Any, settings: Settings, variables: dict, mesh) -> dict:
    """Backbone weights (model.*.init_from), then a whole earlier run (init_from)."""
    for part in ("sampler", "recognizer"):
        spec = config.model[part].init_from
        if not spec.format:
            continue
        from nsnet_jax.pretrained import load_pretrained

        loaded = load_pretrained(
            jax.device_get(variables),
            spec.path,
            spec.format,
            config.model[part].backbone,
            skip=settings.backbone_init_skip[part],
            scope=f"{part}/backbone",
        )
        variables = jax.device_put(dict(loaded), replicated(mesh))
        log.info("model.%s.init_from: loaded %s (%s)", part, spec.path, spec.format)
    if config.init_from.path:
        variables, loaded = checkpointing.load_params_by_path(
            variables, config.init_from.path, settings.init_skip
        )
        log.info("init_from: %d arrays from %s", len(loaded), config.init_from.path)
    return variables


def final_dir(workdir: str, stage: str) -> str:
    return os.path.join(workdir, stage, "final")


def restore_stage_variables(
    config, workdir, model, mesh, stage: str, parts: tuple[str, ...] = ("sampler", "recognizer")
) -> dict:
    """The `parts` (sub-networks) of the params + batch_stats a training stage left in `final`."""
    path = final_dir(workdir, stage)
    if not epath.Path(path).exists():
        raise FileNotFoundError(
            f"stage {config.stage!r} needs the {stage!r} stage's result in {path}; run "
            f"--config.stage={stage} (or --config.stage=all) with this workdir first"
        )
    template = jax.eval_shape(lambda: dict(init_variables(model, config, jax.random.key(0))))
    template = {c: {p: template[c][p] for p in parts if p in template[c]} for c in template}
    rep = replicated(mesh)
    target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=rep), template)
    return checkpointing.restore_variables(path, target)
