"""Command line: `python -m nsnet_jax.export --workdir=DIR --out=EXPORT_DIR`.

Writes EXPORT_DIR/saved_model (TensorFlow SavedModel, serving signatures in
`nsnet_jax.inference.export`), EXPORT_DIR/nsnet.jax_export and EXPORT_DIR/signature.json; with
--onnx also EXPORT_DIR/onnx/{sample,recognize}.onnx (`nsnet_jax.inference.onnx_export`).
Instead of --workdir: --config=configs/NAME.py --checkpoint=RUN/sampler/final. An EXPORT_DIR
that already holds an export needs --force, as `python -m nsnet_jax.pretrained.convert` does.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

from absl import flags

from nsnet_jax import cli
from nsnet_jax.errors import UserError

# --config (default: the workdir's), --workdir (a finished training workdir) and --distributed come
# from nsnet_jax/cli.py, as for every entry point.
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Default: WORKDIR/sampler/final.")
_OUT = flags.DEFINE_string("out", None, "Output directory.")
_PLATFORMS = flags.DEFINE_list(
    "platforms", None, "Serialize for these platforms (cpu, cuda, tpu); default: this one."
)
_JAX_EXPORT = flags.DEFINE_bool("jax_export", True, "Also write nsnet.jax_export.")
_ONNX = flags.DEFINE_bool(
    "onnx", False, "Also write onnx/sample.onnx and onnx/recognize.onnx (extra [onnx])."
)
_FORCE = flags.DEFINE_bool("force", False, "Overwrite an export already in --out.")
flags.mark_flags_as_required(["out"])

EXPORT_FILES = ("saved_model", "nsnet.jax_export", "signature.json", "onnx")


class ExportExistsError(UserError):
    """--out already holds an export; overwriting it needs --force (as convert's does)."""


def existing_export(out: str, force: bool) -> list[str]:
    """The export files already in `out`; refuses them unless `force`."""
    found = [name for name in EXPORT_FILES if os.path.lexists(os.path.join(out, name))]
    if found and not force:
        raise ExportExistsError(
            f"--out={out} already holds an export ({', '.join(found)}): pass --force to "
            "overwrite it, or choose another --out"
        )
    return found


def remove_export(out: str, names: list[str]) -> None:
    """Removes an old export's files, so that none of them outlives the new one."""
    for name in names:
        path = os.path.join(out, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.remove(path)


def main(config: Any, workdir: str | None, argv: list[str]) -> None:
    from nsnet_jax.inference.export import export_all
    from nsnet_jax.inference.trained import load_trained

    old = existing_export(_OUT.value, _FORCE.value)  # before the slow load, not after
    trained = load_trained(workdir, config, _CHECKPOINT.value)
    remove_export(_OUT.value, old)
    info = export_all(
        trained, _OUT.value, platforms=_PLATFORMS.value, with_jax_export=_JAX_EXPORT.value,
        with_onnx=_ONNX.value,
    )  # fmt: skip
    print(json.dumps(info, indent=1))


if __name__ == "__main__":
    cli.run(main, workdir="optional", config_required=False)
