"""Command line: `python -m nsnet_jax.predict --workdir=RUN VIDEO_OR_DIR_OR_LIST ...`.

One JSON line per video (to --out, default stdout): path, top-5 classes with probabilities, the K
selected candidates (positions, source frame numbers, seconds), all T sampler scores, GMACs. A
video that cannot be read is a line with an `error` field; the summary goes to stderr (and to
OUT.summary.json). Instead of --workdir: --config=configs/NAME.py --checkpoint=RUN/sampler/final.
`--split=test --split_dir=DIR` exports the workdir's test split to frame folders and predicts on
them (add --pipeline_views to decode as evaluation does), reporting top-1 beside evaluation's.
`--early_exit_threshold=T`: frames go to the recognizer best-scored first and each video stops at
the first prefix whose confidence is above T (docs/early_exit.md); its line says which were used.
"""

from __future__ import annotations

import json
import math
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
    "engine", "auto", ["auto", "jax", "tf", "onnx", "openvino", "onnx_int8", "openvino_bf16"],
    "Inference engine: jitted JAX, the exported TF SavedModel, the ONNX export run by ONNX "
    "Runtime or OpenVINO (extras [onnx] / [openvino]). auto: on one CPU process the first "
    "installed of openvino, onnx, tf on Intel CPUs, of onnx, openvino, tf on others (fastest "
    "first, docs/performance.md); JAX on accelerators and pods. Reduced precision, never "
    "chosen by auto (same frames, top-1 can differ; docs/serving.md): onnx_int8, ONNX Runtime "
    "with the recognizer's convolutions in int8 (calibrated on the first batch); "
    "openvino_bf16, OpenVINO with the recognizer in bfloat16.",
)  # fmt: skip

_EXIT_THRESHOLD = flags.DEFINE_float(
    "early_exit_threshold", None,
    "Early exit (off by default): add NSNet's frames best first, up to K_max = the largest eval "
    "K, and stop at the first prefix whose confidence (eval.early_exit_rule) is above "
    "this, in [0, 1] (1: never early, 0: after one frame).",
)  # fmt: skip
_EXIT_BUDGET = flags.DEFINE_float(
    "early_exit_budget_gmacs", None,
    "Early exit at the threshold evaluation picked for this mean GMACs per video "
    "(WORKDIR/eval/results.json, from --config.eval.early_exit_budget_gmacs).",
)  # fmt: skip


def budget_threshold(workdir: str | None, budget: float) -> float:
    """The threshold evaluation chose for `budget` GMACs per video (its results.json)."""
    path = os.path.join(workdir or "", "eval", "results.json")
    rerun = (
        f"run evaluation with --config.eval.early_exit_budget_gmacs={budget:g} "
        "(docs/early_exit.md) or pass --early_exit_threshold"
    )
    if not workdir or not os.path.exists(path):
        raise UserError(f"--early_exit_budget_gmacs needs {path or 'WORKDIR/eval/results.json'}: "
                        + rerun)  # fmt: skip
    with open(path) as f:
        ee = json.load(f).get("early_exit") or {}
    if ee.get("budget_threshold") is None:
        raise UserError(f"{path} has no early exit threshold chosen for a budget: {rerun}")
    if not math.isclose(ee["budget_gmacs"], budget, rel_tol=1e-9):
        raise UserError(
            f"{path} holds the threshold for {ee['budget_gmacs']:g} GMACs per video, not "
            f"{budget:g}: pass --early_exit_budget_gmacs={ee['budget_gmacs']:g}, or {rerun}"
        )
    return float(ee["budget_threshold"])


def _exit_threshold(workdir: str | None) -> float | None:
    threshold, budget = _EXIT_THRESHOLD.value, _EXIT_BUDGET.value
    if threshold is not None and budget is not None:
        raise UserError("give --early_exit_threshold or --early_exit_budget_gmacs, not both")
    if budget is not None:
        return budget_threshold(workdir, budget)
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise UserError(f"--early_exit_threshold={threshold:g} must be in [0, 1]")
    return threshold


def main(config: Any, workdir: str | None, argv: list[str]) -> None:
    from nsnet_jax.inference.predictor import PredictOptions, check_early_exit_engine, predict
    from nsnet_jax.inference.trained import load_trained

    inputs = argv[1:]
    if not inputs and not _SPLIT.value:
        sys.exit("predict: give one or more videos, frame folders, list files or directories")
    exit_threshold = _exit_threshold(workdir)  # before the slow load
    if exit_threshold is not None:
        try:
            check_early_exit_engine(_ENGINE.value)
        except ValueError as e:
            raise UserError(str(e)) from None
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
        early_exit_threshold=exit_threshold,
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
