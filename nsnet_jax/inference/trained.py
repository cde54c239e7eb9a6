"""A trained NSNet from a finished workdir (or a config + checkpoint), ready for inference.

The workdir carries everything predict and export need: `config.json` (the run's config),
`sampler/final` (both networks after the last stage) and `run_info.json` (class names). Any other
checkpoint can be paired with a config file; a checkpoint whose parameters do not fit the config
(another architecture: a parameter missing, extra or of another shape) is one `CheckpointMismatch`
line naming the first such parameter and both shapes, checked before anything is restored.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import jax
import ml_collections
from etils import epath

from nsnet_jax import checkpoint_io
from nsnet_jax.config_upgrade import upgrade
from nsnet_jax.errors import UserError
from nsnet_jax.models.nsnet import NSNet, build_model, init_variables


class CheckpointMismatch(UserError, ValueError):
    """The checkpoint holds another architecture's parameters than the config builds."""


@dataclasses.dataclass
class TrainedModel:
    """What a trained run needs at inference: config, module, variables and class names."""

    config: Any
    model: NSNet
    variables: Any
    class_names: tuple[str, ...]
    checkpoint: str


def config_from_workdir(workdir: str) -> ml_collections.ConfigDict:
    """The run's config as `pipeline_run.train_and_evaluate` wrote it to `workdir/config.json`,
    with the fields added since then at the values that run used."""
    path = epath.Path(workdir) / "config.json"
    if not path.exists():
        raise FileNotFoundError(
            f"{path} not found: {workdir} is not a training workdir (no config.json). Pass "
            "--workdir of a finished `python -m nsnet_jax.main` run, or --config and --checkpoint"
        )
    return upgrade(ml_collections.ConfigDict(json.loads(path.read_text())))


def class_names_from_workdir(workdir: str | None, num_classes: int) -> tuple[str, ...]:
    """Class names stored at training time; `class_<i>` where the workdir has none."""
    if workdir:
        path = epath.Path(workdir) / "run_info.json"
        if path.exists():
            names = json.loads(path.read_text()).get("class_names")
            if names and len(names) == num_classes:
                return tuple(str(n) for n in names)
    return tuple(f"class_{i}" for i in range(num_classes))


def load_trained(
    workdir: str | None = None,
    config: Any | None = None,
    checkpoint: str | None = None,
) -> TrainedModel:
    """The trained NSNet of `workdir` (config and `sampler/final` from it), or of config+checkpoint.

    `config` overrides the workdir's config.json; `checkpoint` overrides `workdir/sampler/final`.
    """
    if config is None:
        if workdir is None:
            raise ValueError("give a workdir, or a config and a checkpoint")
        config = config_from_workdir(workdir)
    if checkpoint is None:
        if workdir is None:
            raise ValueError("with --config and no --workdir, give --checkpoint too")
        checkpoint = os.path.join(checkpoint_io.absolute(workdir), "sampler", "final")
    checkpoint = checkpoint_io.absolute(checkpoint)
    if not epath.Path(checkpoint).is_dir():
        raise FileNotFoundError(
            f"checkpoint {checkpoint} not found: the sampler stage has not finished in this "
            "workdir (run `python -m nsnet_jax.main ... --config.stage=all` to finish it), or "
            "pass --checkpoint=DIR/<stage>/final"
        )
    model = build_model(config)
    template = jax.eval_shape(lambda: dict(init_variables(model, config, jax.random.key(0))))
    _check_tree(template, checkpoint, config)
    try:
        variables = checkpoint_io.restore_variables(checkpoint, template)
    except Exception as e:  # noqa: BLE001 - Orbax raises several types for a tree mismatch
        raise ValueError(
            f"checkpoint {checkpoint} does not fit the config (a checkpoint of another "
            f"config? backbones {config.model.sampler.backbone}/"
            f"{config.model.recognizer.backbone}, widths {config.model.sampler.width}/"
            f"{config.model.recognizer.width}, {config.data.num_classes} classes): "
            f"{type(e).__name__}: {str(e)[:300]}"
        ) from e
    _check_shapes(template, variables, checkpoint)
    names = class_names_from_workdir(workdir, config.data.num_classes)
    return TrainedModel(config, model, variables, names, checkpoint)


def _saved_shapes(checkpoint: str) -> dict[str, tuple] | None:
    """Parameter path -> shape of what `checkpoint` holds, from its metadata (no arrays read)."""
    import orbax.checkpoint as ocp
    from flax import traverse_util

    try:
        tree = ocp.StandardCheckpointer().metadata(checkpoint)
        tree = getattr(tree, "item_metadata", tree)
        tree = getattr(tree, "tree", tree)
    except Exception:  # noqa: BLE001 - no readable metadata: the restore reports what it can
        return None
    if not isinstance(tree, dict):
        return None
    flat = traverse_util.flatten_dict(tree, sep="/")
    return {k: tuple(getattr(v, "shape", None) or ()) for k, v in flat.items()}


def _check_tree(template: Any, checkpoint: str, config: Any) -> None:
    """A checkpoint of another architecture fails here, naming the first differing parameter;
    Orbax would restore the common part and leave the rest abstract (failing much later)."""
    from flax import traverse_util

    saved = _saved_shapes(checkpoint)
    if saved is None:
        return
    want = {k: tuple(v.shape) for k, v in traverse_util.flatten_dict(template, sep="/").items()}
    for path in sorted(set(saved) | set(want)):
        a, b = saved.get(path), want.get(path)
        if a == b:
            continue
        n = sum(saved.get(p) != want.get(p) for p in set(saved) | set(want))
        raise CheckpointMismatch(
            f"checkpoint {checkpoint} does not fit the config: {path} is "
            f"{'absent' if a is None else a} in the checkpoint, "
            f"{'absent' if b is None else b} in the config ({n} parameter(s) differ; backbones "
            f"{config.model.sampler.backbone}/{config.model.recognizer.backbone}, temporal "
            f"{config.model.sampler.get('temporal')}, {config.data.num_classes} classes); "
            "pass the config the checkpoint was trained with (--workdir=ITS_RUN without "
            "--config reads it)"
        )


def _check_shapes(template: Any, variables: Any, checkpoint: str) -> None:
    """Orbax can restore a different shape silently; a wrong-config checkpoint must fail here."""
    bad = []
    for (path, want), got in zip(
        jax.tree_util.tree_flatten_with_path(template)[0], jax.tree.leaves(variables), strict=True
    ):
        if tuple(want.shape) != tuple(got.shape):
            bad.append(f"{jax.tree_util.keystr(path)}: config {want.shape} vs {got.shape}")
    if bad:
        raise ValueError(
            f"checkpoint {checkpoint} does not fit the config (a checkpoint of another config?): "
            + "; ".join(bad[:5])
        )
