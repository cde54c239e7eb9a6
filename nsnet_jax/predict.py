"""Command line: `python -m nsnet_jax.predict --workdir=RUN VIDEO_OR_DIR_OR_LIST ...`.

One JSON line per video (to --out, default stdout): path, top-5 classes with probabilities, the K
selected candidates (positions, source frame numbers, seconds), all T sampler scores, GMACs. A
video that cannot be read is a line with an `error` field; the summary goes to stderr (and to
OUT.summary.json). Instead of --workdir: --config=configs/NAME.py --checkpoint=RUN/sampler/final.
`--split=test --split_dir=DIR` exports the workdir's test split to frame folders and predicts on
them (add --pipeline_views to decode as evaluation does), reporting top-1 beside evaluation's.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from absl import flags

from nsnet_jax import cli
from nsnet_jax.errors import UserError

# --config (default: the workdir's), --workdir (a finished training workdir) and --distributed come
# from nsnet_jax/cli.py, as for every entry point.
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Default: WORKDIR/sampler/final.")
_OUT = flags.DEFINE_string("out", None, "JSON lines file (default: stdout).")
_BATCH = flags.DEFINE_integer("batch_size", 8, "Videos per batch (a multiple of the devices).")
_THREADS = flags.DEFINE_integer("num_threads", 4, "Decoding threads.")
_FPS = flags.DEFINE_float("fps", 0.0, "Frame folders: their extraction rate, for timestamps.")
_SAMPLE_FPS = flags.DEFINE_float("sample_fps", 0.0, "Video files: sample at this rate.")
_PIPELINE_VIEWS = flags.DEFINE_bool(
    "pipeline_views", False, "All T frames at full size, both views from them, as evaluation does."
)
_SPLIT = flags.DEFINE_string(
    "split",
    None,
    "Instead of inputs: export this split of the workdir's dataset to frame "
    "folders (--split_dir) and predict on them, printing top-1 beside evaluation's NSNet row.",
)
_SPLIT_DIR = flags.DEFINE_string("split_dir", None, "Where --split writes its frame folders.")
_SHEETS = flags.DEFINE_string("contact_sheets", None, "Write a contact sheet PNG per video here.")
_ENGINE = flags.DEFINE_enum(
    "engine", "auto", ["auto", "jax", "tf", "onnx", "openvino"],
    "Inference engine: jitted JAX, the exported TF SavedModel, the ONNX export run by ONNX "
    "Runtime or OpenVINO (extras [onnx] / [openvino]). auto: on one CPU process the first "
    "installed of onnx, openvino, tf (fastest first, docs/performance.md); JAX on accelerators "
    "and pods.",
)  # fmt: skip


def main(config: Any, workdir: str | None, argv: list[str]) -> None:
    from nsnet_jax.inference.predictor import PredictOptions, predict
    from nsnet_jax.inference.trained import load_trained

    inputs = argv[1:]
    if not inputs and not _SPLIT.value:
        sys.exit("predict: give one or more videos, frame folders, list files or directories")
    try:
        trained = load_trained(workdir, config, _CHECKPOINT.value)
    except (FileNotFoundError, ValueError) as e:
        raise UserError(str(e)) from e
    rows = None
    if _SPLIT.value:
        from nsnet_jax.inference.split_files import export_split_frames

        if not _SPLIT_DIR.value:
            sys.exit("predict: --split needs --split_dir=DIR for the exported frame folders")
        rows = export_split_frames(trained.config.data, _SPLIT.value, _SPLIT_DIR.value)
        inputs = [os.path.join(_SPLIT_DIR.value, f"{_SPLIT.value}.txt")]
    if _OUT.value:  # like --workdir and export's --out: a missing directory is created
        os.makedirs(os.path.dirname(os.path.abspath(_OUT.value)), exist_ok=True)
    out = open(_OUT.value, "w") if _OUT.value else sys.stdout  # noqa: SIM115

    lines: list[dict] = []

    def write(line: dict) -> None:
        out.write(json.dumps(line) + "\n")
        out.flush()
        if rows is not None:
            lines.append(line)

    options = PredictOptions(
        batch_size=_BATCH.value, num_threads=_THREADS.value, folder_fps=_FPS.value,
        sample_fps=_SAMPLE_FPS.value, contact_sheet_dir=_SHEETS.value,
        pipeline_views=_PIPELINE_VIEWS.value, engine=_ENGINE.value,
    )  # fmt: skip
    summary = predict(trained, inputs, write, options)
    if _OUT.value:
        out.close()
        with open(_OUT.value + ".summary.json", "w") as f:
            json.dump(summary, f, indent=1)
    if rows is not None:
        from nsnet_jax.inference.split_files import accuracy_against_split

        summary["split"] = {"name": _SPLIT.value, **accuracy_against_split(lines, rows)}
        summary["split"]["evaluation_nsnet_top1"] = _evaluation_top1(trained, workdir)
    print(json.dumps({"summary": summary}), file=sys.stderr)


def _evaluation_top1(trained, workdir: str | None) -> float | None:
    """NSNet's top-1 at the config's K in WORKDIR/eval/results.json, if evaluation ran."""
    path = os.path.join(workdir or "", "eval", "results.json")
    if not workdir or not os.path.exists(path):
        return None
    with open(path) as f:
        rows = json.load(f)["rows"]
    k = trained.config.model.num_select
    return next((r["top1"] for r in rows if r["method"] == "nsnet" and r["k"] == k), None)


if __name__ == "__main__":
    cli.run(main, workdir="optional", config_required=False, positional=True)
