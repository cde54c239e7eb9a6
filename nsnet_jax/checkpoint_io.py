"""Reading saved variables (a stage's `final` directory, `save_variables`' tree): what predict,
export and the next stage need from a workdir, without the trainer's checkpoint manager.

`nsnet_jax.train.checkpointing` writes these trees and re-exports both functions.
"""

from __future__ import annotations

import os
from typing import Any

import orbax.checkpoint as ocp


def absolute(path: str) -> str:
    """An absolute local path; URLs (gs://, the workdir of a pod) are returned unchanged."""
    return str(path) if "://" in str(path) else os.path.abspath(path)


def restore_variables(path: str, target: Any | None = None) -> Any:
    """`save_variables`'s tree, or just the part that `target` names, laid out like `target`.

    `target` holds abstract arrays (shape, dtype, sharding) and may be a subtree of what was saved,
    e.g. only the recognizer's variables of a checkpoint that holds the sampler's too.
    """
    if target is None:
        return ocp.StandardCheckpointer().restore(absolute(path))
    args = ocp.args.PyTreeRestore(
        item=target,
        restore_args=ocp.checkpoint_utils.construct_restore_args(target),
        partial_restore=True,
    )
    with ocp.PyTreeCheckpointer() as checkpointer:
        return checkpointer.restore(absolute(path), args=args)
