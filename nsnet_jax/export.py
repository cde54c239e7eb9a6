"""Command line: `python -m nsnet_jax.export --workdir=DIR --out=EXPORT_DIR`.

Writes EXPORT_DIR/saved_model (TensorFlow SavedModel, serving signatures in
`nsnet_jax.inference.export`), EXPORT_DIR/nsnet.jax_export and EXPORT_DIR/signature.json.
Instead of --workdir: --config=configs/NAME.py --checkpoint=RUN/sampler/final.
"""

from __future__ import annotations

import json

from absl import app, flags
from ml_collections import config_flags

from nsnet_jax.cli import quiet_library_logging

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (default: the workdir's).")
_WORKDIR = flags.DEFINE_string("workdir", None, "A finished training workdir.")
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Default: WORKDIR/sampler/final.")
_OUT = flags.DEFINE_string("out", None, "Output directory.")
_PLATFORMS = flags.DEFINE_list(
    "platforms", None, "Serialize for these platforms (cpu, cuda, tpu); default: this one."
)
_JAX_EXPORT = flags.DEFINE_bool("jax_export", True, "Also write nsnet.jax_export.")
flags.mark_flags_as_required(["out"])


def main(argv: list[str]) -> None:
    del argv
    quiet_library_logging()
    from nsnet_jax.inference.export import export_all
    from nsnet_jax.inference.trained import load_trained

    trained = load_trained(_WORKDIR.value, _CONFIG.value, _CHECKPOINT.value)
    info = export_all(
        trained, _OUT.value, platforms=_PLATFORMS.value, with_jax_export=_JAX_EXPORT.value
    )
    print(json.dumps(info, indent=1))


if __name__ == "__main__":
    app.run(main)
