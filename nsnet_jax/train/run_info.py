"""What a workdir records about its run: `config.json` (predict, export and diagnose read the
run's config from it) and `run_info.json` (library versions, devices, mesh, class names).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import jax
from etils import epath

from nsnet_jax.input_pipeline import pipeline

log = logging.getLogger("nsnet_jax")


def write_config_json(config: Any, workdir: str) -> None:
    """config.json is this run's config; a different earlier one is kept beside it, never lost."""
    path = epath.Path(workdir) / "config.json"
    text = config.to_json_best_effort(indent=1)
    if path.exists() and path.read_text() != text:
        n = 1
        while (kept := epath.Path(workdir) / f"config.previous-{n}.json").exists():
            n += 1
        path.rename(kept)
        log.warning(
            "config differs from the workdir's earlier run; that config is kept as %s", kept
        )
    path.write_text(text)


def write_run_info(config: Any, workdir: str, mesh) -> None:
    import importlib.metadata as md

    versions = {}
    for pkg in ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "tensorflow-datasets"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    info = {
        "versions": versions,
        "backend": jax.default_backend(),
        "devices": jax.device_count(),
        "local_devices": jax.local_device_count(),
        "processes": jax.process_count(),
        "mesh": dict(mesh.shape),
        "global_batch_size": config.batch_size,
        "local_batch_size": config.batch_size // jax.process_count(),
    }
    try:  # predict and export label their outputs with these
        meta = pipeline.dataset_meta_fields(
            pipeline.load_builder(config.data.name, config.data.data_dir)
        )
        info["class_names"] = list(meta["class_names"])
    except (FileNotFoundError, ValueError):
        info["class_names"] = None
    write_config_json(config, workdir)
    (epath.Path(workdir) / "run_info.json").write_text(json.dumps(info, indent=1))
