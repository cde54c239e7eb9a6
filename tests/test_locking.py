"""One writer at a time (issue 26 item 2): a second writer of a workdir stops at once naming the
holder; a lock whose lease expired, or whose pid is gone on this host, is taken over with a
warning; the holder's heartbeat keeps it alive; the lock goes when its holder exits."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nsnet_jax import locking

ROOT = Path(__file__).resolve().parents[1]


def _plant(path: Path, **fields) -> dict:
    """A lock file as another writer would have left it."""
    now = time.time()
    record = dict(
        host="other-host", pid=4242, start=now - 3600, command="python -m nsnet_jax.main --x",
        heartbeat=now, lease_s=120.0, token="theirs",
    )  # fmt: skip
    record.update(fields)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    return record


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_second_writer_gets_one_line_naming_the_holder(tmp_path):
    lock_file = tmp_path / "w" / locking.WORKDIR_LOCK
    _plant(lock_file, host=socket.gethostname(), pid=os.getppid())  # alive, and not this process
    with pytest.raises(locking.LockHeldError) as info:
        locking.workdir_lock(str(tmp_path / "w")).acquire()
    message = str(info.value)
    assert message.startswith(f"workdir {tmp_path / 'w'} is in use by another writer: host ")
    assert f"host {socket.gethostname()} pid {os.getppid()} (started " in message
    assert "command: python -m nsnet_jax.main --x" in message
    assert "or use another --workdir" in message and str(lock_file) in message
    assert "\n" not in message and info.value.one_line and info.value.exit_code == 2
    assert json.loads(lock_file.read_text())["token"] == "theirs"  # left alone


def test_a_lock_with_an_expired_lease_is_taken_over_with_a_warning(tmp_path, caplog):
    lock_file = tmp_path / locking.WORKDIR_LOCK
    _plant(lock_file, heartbeat=time.time() - 1000, lease_s=120.0)  # another host, silent
    with caplog.at_level(logging.WARNING, "nsnet_jax"):
        lock = locking.workdir_lock(str(tmp_path)).acquire()
    try:
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1, warnings
        assert warnings[0].startswith(f"taking over the lock of workdir {tmp_path} from host ")
        assert "other-host pid 4242" in warnings[0]
        assert "its last heartbeat is 1000 s old, past its lease of 120 s" in warnings[0]
        record = json.loads(lock_file.read_text())
        assert record["pid"] == os.getpid() and record["token"] != "theirs"
    finally:
        lock.release()
    assert not lock_file.exists()


def test_a_lock_whose_pid_is_gone_on_this_host_is_taken_over(tmp_path, caplog):
    lock_file = tmp_path / locking.WORKDIR_LOCK
    pid = _dead_pid()
    _plant(lock_file, host=socket.gethostname(), pid=pid)  # a fresh heartbeat: only the pid tells
    with caplog.at_level(logging.WARNING, "nsnet_jax"), locking.workdir_lock(str(tmp_path)):
        assert json.loads(lock_file.read_text())["pid"] == os.getpid()
    assert any(f"pid {pid} no longer runs on this host" in r.getMessage() for r in caplog.records)
    assert not lock_file.exists()


def test_a_live_lock_on_another_host_is_not_taken_over(tmp_path):
    _plant(tmp_path / locking.WORKDIR_LOCK, pid=_dead_pid())  # that pid means nothing here
    with pytest.raises(locking.LockHeldError, match="host other-host pid"):
        locking.workdir_lock(str(tmp_path)).acquire()


def test_the_holder_refreshes_its_heartbeat(tmp_path):
    lock_file = tmp_path / locking.WORKDIR_LOCK
    with locking.workdir_lock(str(tmp_path), lease_s=0.4):  # a beat every 0.1 s
        first = json.loads(lock_file.read_text())["heartbeat"]
        for _ in range(200):  # bounded: 20 s at most
            time.sleep(0.1)
            if json.loads(lock_file.read_text())["heartbeat"] > first:
                break
        assert json.loads(lock_file.read_text())["heartbeat"] > first


def test_url_stores_write_then_read_back(tmp_path, monkeypatch, caplog):
    """gs:// has no exclusive create: the writer whose token is read back holds the lock."""
    monkeypatch.setattr(locking, "_is_url", lambda path: True)  # etils.epath on a local path
    monkeypatch.setattr(locking, "REMOTE_SETTLE_S", 0.0)
    lock_file = tmp_path / locking.WORKDIR_LOCK
    _plant(lock_file)
    with pytest.raises(locking.LockHeldError, match="host other-host pid 4242"):
        locking.workdir_lock(str(tmp_path)).acquire()
    _plant(lock_file, heartbeat=time.time() - 1000)
    with caplog.at_level(logging.WARNING, "nsnet_jax"), locking.workdir_lock(str(tmp_path)):
        assert json.loads(lock_file.read_text())["pid"] == os.getpid()
    assert any("past its lease" in r.getMessage() for r in caplog.records)
    assert not lock_file.exists()


def test_the_lock_is_released_when_its_holder_exits(tmp_path):
    """At a normal exit without release (atexit), and not at all after kill -9 (then the pid)."""
    code = (
        "import sys\nfrom nsnet_jax import locking\n"
        "locking.workdir_lock(sys.argv[1]).acquire()\nprint('held', flush=True)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=env, timeout=120,
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0 and "held" in done.stdout, done.stderr
    assert not (tmp_path / locking.WORKDIR_LOCK).exists()
    forever = code + "import time\ntime.sleep(600)\n"
    proc = subprocess.Popen([sys.executable, "-c", forever, str(tmp_path)], env=env,
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(locking.LockHeldError, match=f"pid {proc.pid} "):
            locking.workdir_lock(str(tmp_path)).acquire()
    finally:
        proc.kill()
        proc.wait()
    with locking.workdir_lock(str(tmp_path)):  # pid gone: taken over
        pass


def _main_cmd(data_dir, workdir, *extra):
    config = ROOT / "tests" / "tiny_train_config.py"
    return [
        sys.executable, "-m", "nsnet_jax.main", f"--config={config}",
        f"--workdir={workdir}", f"--config.data.data_dir={data_dir}", "--config.stage=recognizer",
        *extra,
    ]  # fmt: skip


@pytest.mark.slow
def test_a_second_training_in_one_workdir_exits_at_once_naming_the_first(
    tiny_fashion_dir, tmp_path
):
    cmd = _main_cmd(tiny_fashion_dir, tmp_path, "--config.recognizer_training.num_steps=400",
                    "--config.checkpoint_every_steps=1000")  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    first = subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.PIPE,
                             stdout=subprocess.DEVNULL, text=True)  # fmt: skip
    try:
        seen = []
        for line in first.stderr:  # until the first one trains (it holds the lock by then)
            seen.append(line)
            if "recognizer step 2/400" in line:
                break
        assert first.poll() is None, "".join(seen)[-3000:]
        second = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                                timeout=300)  # fmt: skip
        assert second.returncode == 2, second.stderr[-3000:]
        lines = [x for x in second.stderr.splitlines() if "is in use by another writer" in x]
        assert len(lines) == 1 and lines[0].startswith(f"error: workdir {tmp_path} "), lines
        assert f"host {socket.gethostname()} pid {first.pid} (started " in lines[0]
        assert "nsnet_jax.main" in lines[0] and "Traceback" not in second.stderr
        assert "stage recognizer: starting" not in second.stderr  # it wrote nothing
        first.send_signal(signal.SIGTERM)
        rest = first.communicate(timeout=120)[1]
        assert first.returncode == 143, rest[-3000:]
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert not (tmp_path / locking.WORKDIR_LOCK).exists()  # released at the preempted exit


def test_only_the_enabled_process_holds_it_and_a_file_is_no_workdir(tmp_path):
    with locking.workdir_lock(str(tmp_path), enabled=False):  # processes 1.. of a multi-host run
        assert not (tmp_path / locking.WORKDIR_LOCK).exists()
    (tmp_path / "run").write_text("")
    with pytest.raises(locking.NotADirectoryForLockError) as info:
        locking.workdir_lock(str(tmp_path / "run")).acquire()
    assert str(info.value) == (
        f"{tmp_path / 'run'} is a file, not a directory: move it away or point --workdir elsewhere"
    )
    assert info.value.one_line


def test_of_writers_racing_for_one_lock_exactly_one_holds_it(tmp_path):
    """Threads of one process stand in for processes: a pid that runs holds the lock."""
    import threading

    won, refused, start = [], [], threading.Barrier(8)

    def contend():
        lock = locking.workdir_lock(str(tmp_path))
        start.wait(timeout=60)
        try:
            won.append(lock.acquire())
        except locking.LockHeldError as e:
            refused.append(str(e))

    threads = [threading.Thread(target=contend) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    try:
        assert len(won) == 1 and len(refused) == 7, (won, refused)
        assert all(f"pid {os.getpid()} " in message for message in refused)
    finally:
        for lock in won:
            lock.release()
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no lock, no temporary file left
