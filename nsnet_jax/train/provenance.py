"""What each stage's result depends on, so a workdir never reports results of another config.

Every stage records the config fields it depends on (`<stage>/stage_config.json`, written when it
starts and again when it finishes). A rerun compares them with the current config before any work:
a finished stage whose fields changed stops the run with the fields named and the way out; a
finished evaluation whose fields changed simply runs again. Fields that never change a result
(logging, checkpoint cadence, data location, input threads) are ignored. Stages that read the
dataset also record its fingerprint (`input_pipeline.manifest.fingerprint`): a workdir trained on a
dataset that was rebuilt or changed since stops the same way, naming both fingerprints.
"""

from __future__ import annotations

import json
from typing import Any

from etils import epath

# ADDED_FIELDS: fields added after workdirs already existed, with the value that gives the earlier
# behaviour: a record without the field matches a config that keeps that value (old workdirs stay
# resumable); config_upgrade fills the same values into an old config.json
from nsnet_jax.config_upgrade import ADDED_FIELDS
from nsnet_jax.train import STAGE_ORDER

# never change a result
_RUN_FIELDS = (
    "stage",
    "log_every_steps",
    "checkpoint_every_steps",
    "keep_checkpoints",
    "data.data_dir",
    "data.num_threads",
    "data.prefetch",
    "data.sampler_cache_dir",
    "data.sampler_cache_augment",
)
# the stage's result does not depend on these (prefixes of dotted fields)
_IGNORED_BY_STAGE: dict[str, tuple[str, ...]] = {
    "recognizer": (
        "model.sampler",
        "model.num_select",
        "pseudo_label",
        "loss",
        "selection",
        "sampler_training",
        "eval",
        "eval_batch_size",
        "data.sampler_size",
        "data.eval_split",
    ),
    "sampler": ("eval", "eval_batch_size", "data.eval_split"),
    "eval": (),
}
# stages that depend on nothing but these (prefixes of dotted fields)
_ONLY_BY_STAGE: dict[str, tuple[str, ...]] = {
    "pretrain": (
        "pretrain",
        "seed",
        "model.dtype",
        "model.depthwise_impl",
        "data.sampler_size",
        "data.recognizer_size",
        "model.sampler.backbone",
        "model.sampler.width",
        "model.sampler.spatial_pool",
        "model.recognizer.backbone",
        "model.recognizer.width",
        "model.recognizer.spatial_pool",
    ),
}
# pseudo labels are the recognizer's outputs on the training split: the same dependencies
_IGNORED_BY_STAGE["pseudo_labels"] = _IGNORED_BY_STAGE["recognizer"]
_RECOGNIZER_STAGES = ("recognizer", "pseudo_labels")
# the content of the dataset a stage read; compared only where both sides know it
DATASET_FIELD = "dataset_fingerprint"
_NO_DATASET_STAGES = ("pretrain",)  # stills made in process, not the dataset


class StaleWorkdirError(RuntimeError):
    """A finished stage of this workdir ran with a config that differs where its result depends."""


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if hasattr(value, "items"):
            out.update(_flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def _ignored(field: str, prefixes: tuple[str, ...]) -> bool:
    return any(field == p or field.startswith(p + ".") for p in prefixes)


def _without_unused_pretrain(flat: dict[str, Any], stage: str) -> dict[str, Any]:
    """`flat` without pretrain's fields where `stage` uses none of its backbones: the stage is
    off, or only the sampler is pretrained and `stage` is the recognizer or its pseudo labels."""
    # a record from before the field existed holds the value that gives the earlier behaviour
    spec = flat.get("pretrain.parts", ADDED_FIELDS["pretrain.parts"])
    parts = [p.strip() for p in str(spec).split(",")]
    used = stage not in _RECOGNIZER_STAGES or "recognizer" in parts
    if flat.get("pretrain.stills_variant") and used:
        return flat
    out = {k: v for k, v in flat.items() if not _ignored(k, ("pretrain",))}
    out["pretrain.stills_variant"] = ""
    return out


def stage_fields(config: Any, stage: str) -> dict[str, Any]:
    """The dotted config fields `stage`'s result depends on, with their values (JSON-safe)."""
    flat = _without_unused_pretrain(_flatten(json.loads(config.to_json_best_effort())), stage)
    skip = _RUN_FIELDS + _IGNORED_BY_STAGE.get(stage, ())
    only = _ONLY_BY_STAGE.get(stage)
    return {
        k: v
        for k, v in sorted(flat.items())
        if not _ignored(k, skip) and (only is None or _ignored(k, only))
    }


def dataset_fingerprint(config: Any) -> str | None:
    """`manifest.fingerprint` of the dataset `config.data` names; None where it is not built."""
    import tensorflow_datasets as tfds

    import nsnet_jax.input_pipeline  # noqa: F401 - registers this project's builders
    from nsnet_jax.input_pipeline import manifest

    try:
        builder = tfds.builder(config.data.name, data_dir=config.data.data_dir or None)
    except (tfds.core.registered.DatasetNotFoundError, ValueError, FileNotFoundError):
        return None
    if not builder.is_prepared():
        return None
    return manifest.fingerprint(builder.data_dir)


def stage_record(config: Any, stage: str) -> dict[str, Any]:
    """What a stage's record holds: its config fields and the fingerprint of its dataset."""
    fields = stage_fields(config, stage)
    if stage not in _NO_DATASET_STAGES and (fingerprint := dataset_fingerprint(config)):
        fields[DATASET_FIELD] = fingerprint
    return fields


def record_path(workdir: str, stage: str) -> epath.Path:
    return epath.Path(workdir) / stage / "stage_config.json"


def write_record(config: Any, workdir: str, stage: str) -> None:
    path = record_path(workdir, stage)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(stage_record(config, stage), indent=1, sort_keys=True))


def read_record(workdir: str, stage: str) -> dict[str, Any] | None:
    path = record_path(workdir, stage)
    return json.loads(path.read_text()) if path.exists() else None


def differences(recorded: dict[str, Any], current: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(field, recorded value, current value) for every field that differs or exists on one side."""
    missing = object()
    fields = sorted(set(recorded) | set(current))
    out = []
    for f in fields:
        a, b = recorded.get(f, missing), current.get(f, missing)
        if a is missing and f in ADDED_FIELDS and b == ADDED_FIELDS[f]:
            continue
        if f == DATASET_FIELD and missing in (a, b):  # recorded before fingerprints, or unbuilt
            continue
        if a != b:
            out.append((f, None if a is missing else a, None if b is missing else b))
    return out


def format_differences(diffs: list[tuple[str, Any, Any]], limit: int = 12) -> str:
    lines = [f"  {f}: {a!r} (recorded) -> {b!r} (now)" for f, a, b in diffs[:limit]]
    if len(diffs) > limit:
        lines.append(f"  ... and {len(diffs) - limit} more")
    return "\n".join(lines)


def check_finished_stages(config: Any, workdir: str) -> list[str]:
    """Raises StaleWorkdirError for a finished training stage whose fields changed, or any
    started one whose dataset changed; returns the finished stages that must run again
    (evaluation, when only its own fields or the dataset changed)."""
    rerun = []
    for stage in STAGE_ORDER:
        recorded = read_record(workdir, stage)
        if recorded is None:  # a workdir from before records existed: nothing to compare
            continue
        # records written before sampler-only pretraining left the recognizer alone hold its fields
        recorded = _without_unused_pretrain(recorded, stage)
        diffs = differences(recorded, stage_record(config, stage))
        finished = (epath.Path(workdir) / stage / "DONE.json").exists()
        if not finished:  # resumed half-way: the checkpoint checks the model; here the dataset
            diffs = [d for d in diffs if d[0] == DATASET_FIELD]
        if not diffs:
            continue
        if stage == "eval":
            rerun.append(stage)
            continue
        later = STAGE_ORDER[STAGE_ORDER.index(stage) :]
        dirs = " ".join(f"{workdir}/{s}" for s in later)
        state = "finished" if finished else "started"
        data = [d for d in diffs if d[0] == DATASET_FIELD]
        head = f"stage {stage!r} in {workdir} {state} with a different config"
        if data:
            head = (
                f"stage {stage!r} in {workdir} {state} on dataset {config.data.name} with "
                f"fingerprint {data[0][1]}; it has fingerprint {data[0][2]} now (rebuilt or "
                f"changed since){', and with a different config' if len(diffs) > 1 else ''}"
            )
        raise StaleWorkdirError(
            f"{head}:\n"
            f"{format_differences(diffs)}\n"
            f"Its results (and every later stage's) belong to the recorded values. Either use a "
            f"new --workdir, or keep the earlier stages and redo {stage!r} onwards by moving its "
            f"results aside first: mkdir -p {workdir}/old && mv {dirs} {workdir}/old/"
        )
    return rerun
