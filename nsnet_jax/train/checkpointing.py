"""Orbax checkpoints of a training stage, and the preemption signal.

A checkpoint holds the train state (step, params, batch_stats, opt_state) and a JSON record with the
data position: the input pipeline's order is a pure function of (seed, step), so the step is the
position, and a resumed run reads exactly the batches an uninterrupted one would have.
Saving is asynchronous, keep-N and atomic (Orbax writes to a temporary directory and renames).
A full disk, wherever Orbax reports it (the save, a later save, the wait), becomes one
`DiskFullError` line naming the directory, the free space and the step a rerun resumes from.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import signal
import sys
import weakref
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import traverse_util

from nsnet_jax.checkpoint_io import absolute, restore_variables  # noqa: F401 - re-exported
from nsnet_jax.errors import NO_SPACE_TEXTS, is_disk_full

log = logging.getLogger(__name__)


class DiskFullError(OSError):
    """The disk filled up while saving; the message says where, how much was free, what to do."""

    one_line = True  # cli prints the message alone: the traceback would add nothing

    def __init__(self, message: str) -> None:
        super().__init__(errno.ENOSPC, message)

    def __str__(self) -> str:
        return self.args[1]


def _free_mib(path: str) -> str:
    """Free space on the filesystem of `path` (or its nearest existing parent), e.g. '1.5 MiB'."""
    if "://" in path:
        return "free space unknown"
    p = os.path.abspath(path)
    while not os.path.exists(p) and os.path.dirname(p) != p:
        p = os.path.dirname(p)
    return f"{shutil.disk_usage(p).free / 2**20:.1f} MiB free on that filesystem"


def _complete_steps(directory: str) -> list[int]:
    """Steps whose checkpoint Orbax finished (unfinished ones keep a temporary suffix)."""
    from etils import epath

    path = epath.Path(directory)
    if not path.exists():
        return []
    return sorted(int(p.name) for p in path.iterdir() if p.name.isdigit())


def _disk_full(what: str, directory: str, checkpoints: str | None) -> DiskFullError:
    """The one line: where, how much was free, and the step a rerun resumes from."""
    if checkpoints is None:
        resume = "rerun the same command"
    else:
        steps = _complete_steps(checkpoints)
        start = f"resume from step {steps[-1]}" if steps else "start the stage again"
        resume = f"rerun the same command to {start}"
    return DiskFullError(
        f"disk full while saving {what} to {directory} ({_free_mib(directory)}): free space or "
        f"move --workdir, then {resume}"
    )


class _DropDiskFullTracebacks(logging.Filter):
    """Orbax logs each failed background write with its traceback (hundreds of lines in all);
    the DiskFullError raised at the save or wait says it in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR or "orbax" not in record.pathname:
            return True
        error = record.exc_info[1] if record.exc_info else None
        return not (is_disk_full(error) or any(t in record.getMessage() for t in NO_SPACE_TEXTS))


_FILTER = _DropDiskFullTracebacks()


def _is_closed_loop_callback(unraisable: Any) -> bool:
    """TensorStore's completion callback of a write whose save already failed, arriving after
    Orbax's event loop closed: "RuntimeError: Event loop is closed", a traceback per write."""
    error, tb = unraisable.exc_value, unraisable.exc_traceback
    if not isinstance(error, RuntimeError) or str(error) != "Event loop is closed" or tb is None:
        return False
    code = tb.tb_frame.f_code
    return code.co_name == "call_soon_threadsafe" and "asyncio" in code.co_filename


def _drop_closed_loop_callbacks(previous: Any) -> Any:
    def hook(unraisable: Any) -> None:
        if not _is_closed_loop_callback(unraisable):
            previous(unraisable)

    hook.nsnet_quiet = True
    return hook


def _quiet_orbax_disk_full() -> None:
    logger = logging.getLogger("absl")  # Orbax logs through absl.logging
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
    # After a failed save, the writes still in flight report to a closed loop, each through
    # sys.unraisablehook with a traceback (dozens, before the one line of DiskFullError).
    if not getattr(sys.unraisablehook, "nsnet_quiet", False):
        sys.unraisablehook = _drop_closed_loop_callbacks(sys.unraisablehook)


def manager(directory: str, *, max_to_keep: int = 3, async_save: bool = True):
    _quiet_orbax_disk_full()
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, enable_async_checkpointing=async_save, create=True
    )
    return ocp.CheckpointManager(absolute(directory), options=options)


# The step each manager is saving in the background: a failure surfaces at a later call, and the
# message must name the step whose save failed.
_PENDING: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()


def _pending(mngr: ocp.CheckpointManager) -> str:
    step = _PENDING.get(mngr)
    return "a checkpoint" if step is None else f"the checkpoint of step {step}"


def save(mngr: ocp.CheckpointManager, step: int, state: Any, meta: dict, force: bool = False):
    """Starts saving `step` in the background; an earlier save's failure surfaces here, named by
    its own step (Orbax waits for the previous save first too, so waiting here costs nothing)."""
    wait(mngr)
    _PENDING[mngr] = step
    try:
        mngr.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
            ),
            force=force,
        )
    except Exception as e:
        if is_disk_full(e):
            directory = str(mngr.directory)
            raise _disk_full(f"the checkpoint of step {step}", directory, directory) from None
        raise


def wait(mngr: ocp.CheckpointManager) -> None:
    """Waits for the background saves; a full disk becomes one DiskFullError line."""
    try:
        mngr.wait_until_finished()
    except Exception as e:
        if is_disk_full(e):
            raise _disk_full(_pending(mngr), str(mngr.directory), str(mngr.directory)) from None
        raise


def finish(mngr: ocp.CheckpointManager) -> None:
    """`wait`, then close the manager."""
    wait(mngr)
    mngr.close()


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


def save_variables(path: str, variables: Any, resume_dir: str | None = None) -> None:
    """A stage's final params + batch_stats, for the next stage, `init_from` and export.

    `resume_dir`: the stage's checkpoint directory, named in the disk-full message.
    """
    _quiet_orbax_disk_full()
    checkpointer = ocp.StandardCheckpointer()
    try:
        checkpointer.save(absolute(path), variables, force=True)
        checkpointer.wait_until_finished()
    except Exception as e:
        if is_disk_full(e):
            raise _disk_full("the final variables", absolute(path), resume_dir) from None
        raise


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
    """Set by SIGTERM or SIGINT (Ctrl-C); the training loop checkpoints and exits at the next step
    boundary, so neither a scheduler's preemption nor a Ctrl-C loses the steps since the last
    checkpoint. A second Ctrl-C stops at once (KeyboardInterrupt), without that checkpoint."""

    received: int | None = None  # the last signal, for the exit status (128 + signal)

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> PreemptionFlag:
        def handler(signum, frame):
            if signum == signal.SIGINT and self.requested:
                raise KeyboardInterrupt
            name = "SIGINT (Ctrl-C)" if signum == signal.SIGINT else "SIGTERM"
            again = " (Ctrl-C again stops at once, without it)" if signum == signal.SIGINT else ""
            log.warning("%s received: checkpointing at the next step, then exiting%s", name, again)
            self.requested = True
            PreemptionFlag.received = signum

        for signum in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[signum] = signal.signal(signum, handler)
            except ValueError:  # not the main thread: no handler, no preemption checkpoint
                pass
        return self

    def __exit__(self, *exc) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous = {}

    def agreed(self) -> bool:
        """True on every process if any process was signalled (they must save together)."""
        if jax.process_count() == 1:
            return self.requested
        from jax.experimental import multihost_utils

        flags = multihost_utils.process_allgather(np.array([self.requested], np.int32))
        return bool(np.asarray(flags).any())
