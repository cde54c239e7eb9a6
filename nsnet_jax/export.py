"""Command line: `python -m nsnet_jax.export --workdir=DIR --out=EXPORT_DIR`.

Writes EXPORT_DIR/saved_model (TensorFlow SavedModel, serving signatures in
`nsnet_jax.inference.export`), EXPORT_DIR/nsnet.jax_export and EXPORT_DIR/signature.json.
Instead of --workdir: --config=configs/NAME.py --checkpoint=RUN/sampler/final.
"""

from __future__ import annotations

import json
from typing import Any

from absl import flags

from nsnet_jax import cli

# --config (default: the workdir's), --workdir (a finished training workdir) and --distributed come
# from nsnet_jax/cli.py, as for every entry point.
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Default: WORKDIR/sampler/final.")
_OUT = flags.DEFINE_string("out", None, "Output directory.")
_PLATFORMS = flags.DEFINE_list(
    "platforms", None, "Serialize for these platforms (cpu, cuda, tpu); default: this one."
)
_JAX_EXPORT = flags.DEFINE_bool("jax_export", True, "Also write nsnet.jax_export.")
flags.mark_flags_as_required(["out"])


def main(config: Any, workdir: str | None, argv: list[str]) -> None:
    from nsnet_jax.inference.export import export_all
    from nsnet_jax.inference.trained import load_trained

    trained = load_trained(workdir, config, _CHECKPOINT.value)
    info = export_all(
        trained, _OUT.value, platforms=_PLATFORMS.value, with_jax_export=_JAX_EXPORT.value
    )
    print(json.dumps(info, indent=1))


if __name__ == "__main__":
    cli.run(main, workdir="optional", config_required=False)
