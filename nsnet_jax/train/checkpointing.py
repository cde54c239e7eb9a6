"""Orbax checkpoints of a training stage, and the preemption signal.

A checkpoint holds the train state (step, params, batch_stats, opt_state) and a JSON record with the
data position: the input pipeline's order is a pure function of (seed, step), so the step is the
position, and a resumed run reads exactly the batches an uninterrupted one would have.
Saving is asynchronous, keep-N and atomic (Orbax writes to a temporary directory and renames).
"""

from __future__ import annotations

import logging
import os
import signal
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import traverse_util

log = logging.getLogger(__name__)


def absolute(path: str) -> str:
    """An absolute local path; URLs (gs://, the workdir of a pod) are returned unchanged."""
    return str(path) if "://" in str(path) else os.path.abspath(path)


def manager(directory: str, *, max_to_keep: int = 3, async_save: bool = True):
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, enable_async_checkpointing=async_save, create=True
    )
    return ocp.CheckpointManager(absolute(directory), options=options)


def save(mngr: ocp.CheckpointManager, step: int, state: Any, meta: dict, force: bool = False):
    mngr.save(
        step,
        args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
        force=force,
    )


def _abstract(tree: Any) -> Any:
    return jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)),
        tree,
    )


def restore(mngr: ocp.CheckpointManager, state_like: Any, step: int | None = None):
    """(state, meta) of `step` (default: the latest), laid out like `state_like`."""
    step = mngr.latest_step() if step is None else step
    restored = mngr.restore(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardRestore(_abstract(state_like)), meta=ocp.args.JsonRestore()
        ),
    )
    return restored["state"], restored["meta"]


class CheckpointMismatchError(ValueError):
    """A checkpoint's parameters do not fit the model being trained."""


def shape_mismatches(
    mngr: ocp.CheckpointManager, step: int, state_like: dict[str, Any]
) -> list[tuple[str, tuple, tuple]]:
    """(parameter path, saved shape, expected shape) where the checkpoint's model differs from the
    one about to be trained; params and batch_stats only (the optimizer state follows them)."""
    try:
        path = os.path.join(str(mngr.directory), str(step), "state")
        tree = ocp.StandardCheckpointer().metadata(path)
        tree = getattr(tree, "item_metadata", tree)
        tree = getattr(tree, "tree", tree)
    except Exception:  # noqa: BLE001 - no metadata (old Orbax): the restore reports what it can
        return []
    if not isinstance(tree, dict):
        return []
    out = []
    for part in ("params", "batch_stats"):
        saved = traverse_util.flatten_dict(tree.get(part, {}) or {}, sep="/")
        want = traverse_util.flatten_dict(state_like.get(part, {}) or {}, sep="/")
        for path in sorted(set(saved) | set(want)):
            a = tuple(getattr(saved.get(path), "shape", ()) or ()) if path in saved else None
            b = tuple(np.shape(want[path])) if path in want else None
            if a != b:
                out.append((f"{part}/{path}", a, b))
    return out


def save_variables(path: str, variables: Any) -> None:
    """A stage's final params + batch_stats, for the next stage, `init_from` and export."""
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(absolute(path), variables, force=True)
    checkpointer.wait_until_finished()


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


def load_params_by_path(
    target: Any, path: str, skip: tuple[str, ...] = ()
) -> tuple[Any, list[str]]:
    """Variables of another run (its `<stage>/final` directory) copied into `target` by tree path.

    Paths matching a glob in `skip` keep the target's value; a path in both with another shape is
    an error that lists every such path. Returns the new tree and the loaded paths.
    """
    import fnmatch

    from etils import epath

    if not epath.Path(path).is_dir():
        raise FileNotFoundError(
            f"init_from.path={path!r} is not a directory; point it at another run's "
            "WORKDIR/<stage>/final (e.g. WORKDIR/sampler/final)"
        )
    source = restore_variables(path)
    flat_src = traverse_util.flatten_dict(source, sep="/")
    flat_dst = traverse_util.flatten_dict(dict(target), sep="/")
    loaded, mismatched = [], []
    for key, value in flat_dst.items():
        src = flat_src.get(key)
        if src is None or any(fnmatch.fnmatch(key, pattern) for pattern in skip):
            continue
        if tuple(src.shape) != tuple(value.shape):
            mismatched.append(f"{key}: checkpoint {tuple(src.shape)} vs model {value.shape}")
            continue
        sharding = getattr(value, "sharding", None)
        flat_dst[key] = jax.device_put(np.asarray(src).astype(value.dtype), sharding)
        loaded.append(key)
    if mismatched:
        raise ValueError(
            "init_from: shapes differ (add these paths to init_from.skip to keep fresh values):\n  "
            + "\n  ".join(mismatched)
        )
    if not loaded:
        raise ValueError(f"init_from: no parameter path of {path} matches the model")
    return traverse_util.unflatten_dict(flat_dst, sep="/"), loaded


class PreemptionFlag:
    """Set by SIGTERM; the training loop checkpoints and exits at the next step boundary."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def __enter__(self) -> PreemptionFlag:
        def handler(signum, frame):
            log.warning("SIGTERM received: checkpointing at the next step, then exiting")
            self.requested = True

        try:
            self._previous = signal.signal(signal.SIGTERM, handler)
        except ValueError:  # not the main thread: no handler, no preemption checkpoint
            self._previous = None
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)

    def agreed(self) -> bool:
        """True on every process if any process was signalled (they must save together)."""
        if jax.process_count() == 1:
            return self.requested
        from jax.experimental import multihost_utils

        flags = multihost_utils.process_allgather(np.array([self.requested], np.int32))
        return bool(np.asarray(flags).any())
