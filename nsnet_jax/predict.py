"""Command line: `python -m nsnet_jax.predict --workdir=RUN VIDEO_OR_DIR_OR_LIST ...`.

One JSON line per video (to --out, default stdout): path, top-5 classes with probabilities, the K
selected candidates (positions, source frame numbers, seconds), all T sampler scores, GMACs. A
video that cannot be read is a line with an `error` field; the summary goes to stderr (and to
OUT.summary.json). Instead of --workdir: --config=configs/NAME.py --checkpoint=RUN/sampler/final.
"""

from __future__ import annotations

import json
import sys

from absl import app, flags
from ml_collections import config_flags

from nsnet_jax.cli import quiet_library_logging

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (default: the workdir's).")
_WORKDIR = flags.DEFINE_string("workdir", None, "A finished training workdir.")
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Default: WORKDIR/sampler/final.")
_OUT = flags.DEFINE_string("out", None, "JSON lines file (default: stdout).")
_BATCH = flags.DEFINE_integer("batch_size", 8, "Videos per batch (a multiple of the devices).")
_THREADS = flags.DEFINE_integer("num_threads", 4, "Decoding threads.")
_FPS = flags.DEFINE_float("fps", 0.0, "Frame folders: their extraction rate, for timestamps.")
_SAMPLE_FPS = flags.DEFINE_float("sample_fps", 0.0, "Video files: sample at this rate.")
_PIPELINE_VIEWS = flags.DEFINE_bool(
    "pipeline_views", False, "All T frames at full size, both views from them, as evaluation does."
)
_SHEETS = flags.DEFINE_string("contact_sheets", None, "Write a contact sheet PNG per video here.")


def main(argv: list[str]) -> None:
    quiet_library_logging()
    from nsnet_jax.inference.predictor import PredictOptions, predict
    from nsnet_jax.inference.trained import load_trained

    inputs = argv[1:]
    if not inputs:
        sys.exit("predict: give one or more videos, frame folders, list files or directories")
    try:
        trained = load_trained(_WORKDIR.value, _CONFIG.value, _CHECKPOINT.value)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"predict: {e}")
    out = open(_OUT.value, "w") if _OUT.value else sys.stdout  # noqa: SIM115

    def write(line: dict) -> None:
        out.write(json.dumps(line) + "\n")
        out.flush()

    options = PredictOptions(
        batch_size=_BATCH.value, num_threads=_THREADS.value, folder_fps=_FPS.value,
        sample_fps=_SAMPLE_FPS.value, contact_sheet_dir=_SHEETS.value,
        pipeline_views=_PIPELINE_VIEWS.value,
    )  # fmt: skip
    summary = predict(trained, inputs, write, options)
    if _OUT.value:
        out.close()
        with open(_OUT.value + ".summary.json", "w") as f:
            json.dump(summary, f, indent=1)
    print(json.dumps({"summary": summary}), file=sys.stderr)


if __name__ == "__main__":
    app.run(main)
