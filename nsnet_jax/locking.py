"""One writer at a time: a lock file in a workdir or dataset directory that names its holder.

Two trainings in one workdir, or two builds of one dataset, overwrite each other's files and fail
far from the cause (Orbax's "params are missing .zarray", a vanished cache `.pkl.tmp`). The second
writer must stop at once and say who holds the directory.

Where workdirs live (local disks, NFS, gs:// buckets) flock is unreliable or absent, so the lock is
a file, created exclusively: on a local or NFS path written in full, then hard-linked into place
(the link fails when the lock exists; O_CREAT | O_EXCL where there are no hard links); on a URL
such as gs:// (no exclusive create through tf.io.gfile) written, then read back after a pause, and
whoever's token is in it holds the lock. The file holds JSON {host, pid, start, command, heartbeat,
lease_s, token}; a daemon thread of the holder rewrites the heartbeat every lease_s / 4 seconds.
A lock is stale, and is taken over with a warning, when its heartbeat is older than its lease (a
lost host, a frozen job) or when its pid no longer runs on this host (kill -9). Multi-host runs:
process 0 alone holds the lock, for the whole run.

The module imports neither JAX nor the trainer: the input pipeline's build uses it too. Its errors
are UserErrors: the command line prints them as one line, `error: ...`, exit code 2.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import shlex
import socket
import sys
import threading
import time
import uuid
from typing import Any

from nsnet_jax.errors import UserError

log = logging.getLogger("nsnet_jax")

DEFAULT_LEASE_S = 120.0
REMOTE_SETTLE_S = 2.0  # URL stores: the pause between writing the lock and reading it back


class LockHeldError(UserError):
    """Another live writer holds the directory; the message names it and what to do."""


class NotADirectoryForLockError(UserError):
    """The directory to lock is a file."""


def _is_url(path: str) -> bool:
    return "://" in path


def _now_text(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(seconds))


def _command() -> str:
    argv = getattr(sys, "orig_argv", None) or [sys.executable, *sys.argv]
    text = " ".join(shlex.join([os.path.basename(argv[0]), *argv[1:]]).split())  # one line
    return text if len(text) <= 300 else text[:297] + "..."


def pid_running(pid: int) -> bool:
    """Whether process `pid` runs on this host (a zombie, killed but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (OSError, IndexError):  # no /proc (macOS): os.kill said it exists
        return True


class WriterLock:
    """The lock file `path`, guarding `what` (e.g. "workdir /runs/a"); a context manager.

    `flag`: the command-line flag that points elsewhere (named in the message), e.g. --workdir.
    `enabled=False` makes every method a no-op (the processes other than 0 of a multi-host run).
    """

    def __init__(
        self,
        path: str,
        what: str,
        *,
        flag: str = "",
        lease_s: float = DEFAULT_LEASE_S,
        enabled: bool = True,
    ) -> None:
        self.path = str(path)
        self.what = what
        self.flag = flag
        self.lease_s = float(lease_s)
        self.enabled = enabled
        self.record: dict[str, Any] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- the store: local/NFS files through os, URLs through etils.epath (tf.io.gfile) ----------

    def _read(self, path: str | None = None) -> dict[str, Any] | None:
        """The lock's record; None when there is no lock file; {} when it is unreadable."""
        path = path or self.path
        try:
            if _is_url(path):
                from etils import epath

                p = epath.Path(path)
                if not p.exists():
                    return None
                text = p.read_text()
            else:
                with open(path) as f:
                    text = f.read()
        except FileNotFoundError:
            return None
        try:
            record = json.loads(text)
        except ValueError:  # half-written (a crash mid-write) or foreign
            return {}
        return record if isinstance(record, dict) else {}

    def _write(self, record: dict[str, Any]) -> None:
        """Replaces the lock's content in one step (a reader sees the old or the new record)."""
        text = json.dumps(record, indent=1)
        if _is_url(self.path):
            from etils import epath

            epath.Path(self.path).write_text(text)
            return
        tmp = f"{self.path}.{record['token']}.tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.path)

    def _create(self, record: dict[str, Any]) -> bool:
        """Creates the lock file holding `record` unless one exists; True if this call made it."""
        if _is_url(self.path):
            if self._read() is not None:
                return False
            self._write(record)
            time.sleep(REMOTE_SETTLE_S)  # a concurrent writer's file lands within this pause
            return (self._read() or {}).get("token") == record["token"]
        # Written in full, then hard-linked into place: the link fails if the lock exists (atomic,
        # NFS included), and no reader ever sees a half-written lock.
        tmp = f"{self.path}.{record['token']}.tmp"
        with open(tmp, "w") as f:
            f.write(json.dumps(record, indent=1))
        try:
            os.link(tmp, self.path)
            return True
        except FileExistsError:
            return False
        except OSError:  # no hard links here (e.g. a FUSE mount): exclusive create instead
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(record, indent=1))
            return True
        finally:
            os.unlink(tmp)

    def _remove_if(self, token: str | None) -> bool:
        """Removes the lock file if it still holds `token`; True if it did."""
        if _is_url(self.path):
            from etils import epath

            if (self._read() or {}).get("token") != token:
                return False
            epath.Path(self.path).unlink(missing_ok=True)
            return True
        # Moved aside first (atomic), so a lock that another writer created in the meantime is
        # not deleted: it is checked after the move, and put back.
        aside = f"{self.path}.{uuid.uuid4().hex}.stale"
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return True
        if (self._read(aside) or {}).get("token") == token:
            os.unlink(aside)
            return True
        try:
            os.link(aside, self.path)  # fails if yet another writer made one
        except FileExistsError:
            pass
        os.unlink(aside)
        return False

    # ---- holding ---------------------------------------------------------------------------------

    def _stale_reason(self, holder: dict[str, Any], now: float) -> str | None:
        """Why the holder's lock may be taken over, or None while it holds."""
        if not holder:
            return "the lock file is unreadable"
        age = now - float(holder.get("heartbeat", 0))
        lease = float(holder.get("lease_s", DEFAULT_LEASE_S))
        if age > lease:
            return f"its last heartbeat is {age:.0f} s old, past its lease of {lease:.0f} s"
        if holder.get("host") == socket.gethostname():
            pid = int(holder.get("pid", -1))
            if not pid_running(pid):  # this very process counts as running: a second writer in it
                return f"pid {pid} no longer runs on this host"
        return None

    def describe(self, holder: dict[str, Any], now: float | None = None) -> str:
        """'host H pid P (started ..., last heartbeat N s ago, command: ...)'."""
        now = time.time() if now is None else now
        beat = now - float(holder.get("heartbeat", 0))
        return (
            f"host {holder.get('host', '?')} pid {holder.get('pid', '?')} (started "
            f"{_now_text(float(holder.get('start', 0)))}, last heartbeat {beat:.0f} s ago, "
            f"command: {holder.get('command', '?')})"
        )

    def acquire(self) -> WriterLock:
        """Takes the lock, or raises LockHeldError naming the live holder; starts the heartbeat."""
        if not self.enabled or self.record is not None:
            return self
        directory = os.path.dirname(self.path)
        if _is_url(self.path):
            from etils import epath

            epath.Path(directory).mkdir(parents=True, exist_ok=True)
        else:
            if os.path.exists(directory) and not os.path.isdir(directory):
                elsewhere = f" or point {self.flag} elsewhere" if self.flag else ""
                raise NotADirectoryForLockError(
                    f"{directory} is a file, not a directory: move it away{elsewhere}"
                )
            os.makedirs(directory, exist_ok=True)
        now = time.time()
        record = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "start": now,
            "start_utc": _now_text(now),
            "command": _command(),
            "heartbeat": now,
            "lease_s": self.lease_s,
            "token": uuid.uuid4().hex,
        }
        for _ in range(5):  # bounded: each round either takes the lock or finds a live holder
            if self._create(record):
                self.record = record
                self._start_heartbeat()
                return self
            holder = self._read()
            if holder is None:  # released between our attempt and the read
                continue
            reason = self._stale_reason(holder, time.time())
            if reason is None:
                raise LockHeldError(self._held_message(holder))
            if self._remove_if(holder.get("token")):
                log.warning(
                    "taking over the lock of %s from %s: %s (lock file %s)",
                    self.what, self.describe(holder), reason, self.path,
                )  # fmt: skip
        holder = self._read() or {}
        raise LockHeldError(self._held_message(holder))

    def _held_message(self, holder: dict[str, Any]) -> str:
        elsewhere = f", or use another {self.flag}" if self.flag else ""
        return (
            f"{self.what} is in use by another writer: {self.describe(holder)}; wait for it to "
            f"finish or stop it{elsewhere} (lock file {self.path}, taken over once its heartbeat "
            f"is {float(holder.get('lease_s', self.lease_s)):.0f} s old)"
        )

    def _start_heartbeat(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name="nsnet-lock-heartbeat", daemon=True)
        self._thread.start()
        atexit.register(self.release)

    def _beat(self) -> None:
        """Rewrites the heartbeat; stops (with an error) if another writer took the lock over."""
        while not self._stop.wait(self.lease_s / 4):
            record = self.record
            if record is None:
                return
            try:
                current = self._read()
                if current is not None and current.get("token") != record["token"]:
                    log.error(
                        "the lock of %s was taken over by %s: two writers now share it; stop one "
                        "of them (lock file %s)",
                        self.what, self.describe(current), self.path,
                    )  # fmt: skip
                    return
                record["heartbeat"] = time.time()
                self._write(record)
            except OSError as e:  # a flaky network disk: the next beat tries again
                log.warning("could not refresh the lock %s: %s", self.path, e)

    def refresh(self) -> None:
        """Rewrites the heartbeat now (the thread does it every lease_s / 4 seconds)."""
        if self.record is not None:
            self.record["heartbeat"] = time.time()
            self._write(self.record)

    def release(self) -> None:
        """Stops the heartbeat and removes the lock file if it is still this writer's."""
        record, self.record = self.record, None
        if record is None:
            return
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
        atexit.unregister(self.release)
        try:
            self._remove_if(record["token"])
        except OSError as e:
            log.warning("could not remove the lock %s: %s", self.path, e)

    def __enter__(self) -> WriterLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


WORKDIR_LOCK = "writer.lock"


def workdir_lock(workdir: str, *, enabled: bool = True, lease_s: float = DEFAULT_LEASE_S):
    """The lock of a training workdir (WORKDIR/writer.lock); `enabled`: this process holds it."""
    workdir = workdir if _is_url(workdir) else os.path.abspath(workdir)
    path = f"{workdir.rstrip('/')}/{WORKDIR_LOCK}"
    return WriterLock(
        path, f"workdir {workdir}", flag="--workdir", lease_s=lease_s, enabled=enabled
    )
