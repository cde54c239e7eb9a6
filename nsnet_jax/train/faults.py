"""A failed process ends a multi-process run promptly, and its peers say which one failed.

Without this, a process that raises leaves its peers waiting in a collective or a barrier, and its
own exit waits in the distributed runtime's shutdown barrier (5 minutes by default) for peers that
never come. Here, through the coordination service that `jax.distributed.initialize` starts (so it
holds on a pod and under SLURM, not only on one machine):

- a process that raises publishes "process i failed: <error>" in the service's key-value store,
  waits (bounded) until its peers confirm, and exits;
- every process runs a watchdog thread that polls for such records and exits, naming the failed
  process, even while its main thread is blocked in a device collective;
- `barrier` waits through the key-value store rather than a device collective, checking for
  failures while it waits;
- a process that dies without a Python error (SIGKILL, out of memory, lost host) is found by the
  runtime's heartbeats: `heartbeat_timeout` seconds later it ends every survivor with "The
  following tasks are unhealthy (stopped sending heartbeats): <process ids>".
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
import time
import traceback
from typing import Any, NoReturn

import jax

log = logging.getLogger("nsnet_jax")

PREFIX = "nsnet_jax"
DEFAULT_HEARTBEAT_TIMEOUT_S = 30
SHUTDOWN_TIMEOUT_S = 60
POLL_S = 0.5
FAILED_EXIT_CODE = 1
_STATE: dict[str, Any] = {"heartbeat_timeout_s": DEFAULT_HEARTBEAT_TIMEOUT_S}
_STOPPING = threading.Lock()


class PeerFailedError(RuntimeError):
    """Another process of the run failed; this one cannot go on without it."""


def _client() -> Any:
    """The coordination service client of `jax.distributed` (None when not initialized).

    JAX has no public accessor; Orbax and jax.experimental.multihost_utils read the same field.
    """
    from jax._src import distributed

    return distributed.global_state.client


def _active() -> bool:
    return _client() is not None and jax.process_count() > 1


def initialize(
    coordinator_address: str | None,
    num_processes: int | None,
    process_id: int | None,
    heartbeat_timeout_s: int = DEFAULT_HEARTBEAT_TIMEOUT_S,
) -> None:
    """`jax.distributed.initialize` with prompt failure detection, then the watchdog thread.

    A shorter heartbeat timeout (JAX's default is 100 s) ends the survivors of a killed process
    sooner; a shorter shutdown timeout (default 300 s) bounds the exit of a process whose peers
    are gone.
    """
    _STATE["heartbeat_timeout_s"] = heartbeat_timeout_s
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
        heartbeat_timeout_seconds=heartbeat_timeout_s,
        shutdown_timeout_seconds=SHUTDOWN_TIMEOUT_S,
    )
    if jax.process_count() > 1:
        # Registered after JAX's own exit hook, so it runs first: the watchdog must not take the
        # runtime's shutdown at a normal exit for a lost coordination service.
        atexit.register(_STATE.__setitem__, "exiting", True)
        threading.Thread(target=_watch, name="nsnet-peer-watchdog", daemon=True).start()


def _failures(client: Any) -> dict[int, str]:
    """{process id: its error} of every process that published a failure."""
    return {
        int(key.rsplit("/", 1)[-1]): value
        for key, value in client.key_value_dir_get(f"{PREFIX}/failed/")
    }


def _ids(entries: list[tuple[str, str]]) -> set[int]:
    return {int(key.rsplit("/", 1)[-1]) for key, _ in entries}


def _stop(message: str) -> NoReturn:
    """Logs why this process stops, confirms to the failed process, exits without cleanup.

    os._exit: the main thread may be blocked in a collective that never returns, and a normal
    exit would wait in the runtime's shutdown barrier for the failed process.
    """
    if not _STOPPING.acquire(blocking=False):  # the watchdog and a barrier both noticed
        while True:
            time.sleep(60)  # the first caller exits the process
    me = jax.process_index()
    log.error("stopping process %d: %s", me, message)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    client = _client()
    try:
        client.key_value_set(f"{PREFIX}/stopped/{me}", "1", allow_overwrite=True)
        if me == 0:  # hosts the service: its exit would abort the peers before they read why
            _wait_for_peers(client, seconds=5)
            time.sleep(3 * POLL_S)  # the failed process exits once it has seen every confirmation
    except Exception:  # noqa: BLE001 - the service may be gone with process 0; we exit anyway
        pass
    os._exit(FAILED_EXIT_CODE)


def _wait_for_peers(client: Any, seconds: float) -> set[int]:
    """Waits until every other process confirmed it stops or published its own failure.

    Returns the processes that did neither within `seconds`.
    """
    me, n = jax.process_index(), jax.process_count()
    deadline = time.monotonic() + seconds
    while True:
        try:
            done = _ids(client.key_value_dir_get(f"{PREFIX}/stopped/")) | set(_failures(client))
        except Exception:  # noqa: BLE001 - the service went away with process 0
            return set()
        waiting = set(range(n)) - done - {me}
        if not waiting or time.monotonic() > deadline:
            return waiting
        time.sleep(POLL_S)


def _describe(failures: dict[int, str]) -> str:
    return "; ".join(
        f"process {i} failed: {error} (see its log)" for i, error in sorted(failures.items())
    )


def _watch() -> None:
    """Polls the key-value store; stops this process when another one failed or vanished."""
    me = jax.process_index()
    client = _client()
    while True:
        time.sleep(POLL_S)
        if _STATE.get("exiting"):
            return
        try:
            others = {i: e for i, e in _failures(client).items() if i != me}
        except Exception as e:  # noqa: BLE001 - any RPC error means the service is unreachable
            if _STATE.get("exiting") or _client() is None:  # a normal exit
                return
            _stop(
                "lost the coordination service (hosted by process 0): process 0 has stopped "
                f"(see its log): {str(e).splitlines()[0] if str(e) else type(e).__name__}"
            )
        if others:
            _stop(_describe(others))


def barrier(name: str) -> None:
    """Every process waits here until all arrived; a peer's failure ends the wait with its error.

    Through the key-value store, not a device collective: no program to compile, and nothing
    that blocks where a failure could not be noticed. Names may repeat (each call is counted).
    """
    if not _active():
        return
    client = _client()
    count = _BARRIER_COUNTS.get(name, 0) + 1
    _BARRIER_COUNTS[name] = count
    me, n = jax.process_index(), jax.process_count()
    directory = f"{PREFIX}/barrier/{name}#{count}/"
    client.key_value_set(f"{directory}{me}", "1")
    while True:
        arrived = len(client.key_value_dir_get(directory))
        if arrived >= n:
            return
        others = {i: e for i, e in _failures(client).items() if i != me}
        if others:
            raise PeerFailedError(f"barrier {name!r}: {_describe(others)}")
        time.sleep(POLL_S / 5)


_BARRIER_COUNTS: dict[str, int] = {}


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    line = text.splitlines()[0] if text else ""
    line = f"{type(error).__name__}: {line}" if line else type(error).__name__
    return line[:500]


def fail(error: BaseException) -> NoReturn:
    """This process failed: traceback, publish the error, wait for the peers to stop, exit.

    The wait (bounded by the heartbeat timeout plus a margin) keeps process 0, which hosts the
    coordination service, alive until its peers have read why they must stop.
    """
    me, n = jax.process_index(), jax.process_count()
    client = _client()
    if isinstance(error, PeerFailedError):  # not this process's fault: no traceback
        _stop(str(error))
    if not getattr(error, "one_line", False):  # e.g. disk full: the message says it all
        traceback.print_exception(error)
    message = _first_line(error)
    client.key_value_set(f"{PREFIX}/failed/{me}", message, allow_overwrite=True)
    log.error("process %d failed: %s; telling the other %d process(es) to stop", me, message, n - 1)
    waiting = _wait_for_peers(client, seconds=_grace_s())
    if waiting:
        log.error(
            "process(es) %s did not confirm within %d s: they may have stopped too "
            "(killed, out of memory, host lost); check their logs",
            sorted(waiting), _grace_s(),
        )  # fmt: skip
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(FAILED_EXIT_CODE)


def _grace_s() -> int:
    """How long a failed process waits for its peers: past the runtime's own detection."""
    return min(_STATE["heartbeat_timeout_s"] + 5, 45)


def is_multiprocess() -> bool:
    """True in a run of several processes joined by `jax.distributed.initialize`."""
    return _active()
