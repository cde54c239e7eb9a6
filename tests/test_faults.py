"""A failed process ends a 2-process run (127.0.0.1, 2 CPU devices each) promptly, and the
survivor names it: a raised error (peer at a barrier or in a device collective), a SIGKILL."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.processes import free_port

ROOT = Path(__file__).resolve().parents[1]
PROGRAM = ROOT / "tests" / "fault_program.py"


def _run_pair(tmp_path, fault: str, wait: str, victim: int = 1, heartbeat: int = 30):
    """Starts both processes, waits at most 90 s; returns ([rc0, rc1], [log0, log1], seconds)."""
    port = free_port()
    env = dict(
        os.environ, JAX_PLATFORMS="cpu", JAX_NUM_CPU_DEVICES="2", NSNET_TEST_FAULT=fault,
        NSNET_TEST_WAIT=wait, NSNET_TEST_FAULT_PROCESS=str(victim),
        JAX_ENABLE_COMPILATION_CACHE="false",
    )  # fmt: skip
    env.pop("XLA_FLAGS", None)
    procs, logs = [], []
    start = time.monotonic()
    for i in range(2):
        log = open(tmp_path / f"process_{i}.log", "w")  # noqa: SIM115 - closed below
        logs.append(log)
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    str(PROGRAM),
                    "--distributed",
                    f"--coordinator_address=127.0.0.1:{port}",
                    "--num_processes=2",
                    f"--process_id={i}",
                    f"--heartbeat_timeout={heartbeat}",
                ],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        )
    seconds = {}
    try:
        for i, p in enumerate(procs):
            p.wait(timeout=max(1.0, 90 - (time.monotonic() - start)))
            seconds[i] = time.monotonic() - start
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for log in logs:
            log.close()
    texts = [(tmp_path / f"process_{i}.log").read_text() for i in range(2)]
    return [p.returncode for p in procs], texts, seconds


@pytest.mark.slow
@pytest.mark.parametrize("wait", ["barrier", "collective"])
def test_a_raising_process_stops_its_peer_with_its_error(tmp_path, wait):
    rcs, logs, seconds = _run_pair(tmp_path, "raise", wait)
    assert rcs == [1, 1], logs
    assert seconds[0] < 60, seconds
    assert "stopping process 0: " in logs[0]
    assert "process 1 failed: RuntimeError: injected failure in process 1" in logs[0], logs[0]
    assert "passed the barrier" not in logs[0]
    # The failed process's own log: its traceback, then one line, and no runtime abort.
    assert "Traceback" in logs[1] and "process 1 failed: RuntimeError" in logs[1], logs[1]
    assert "Terminating process" not in logs[1], logs[1]


@pytest.mark.slow
def test_a_killed_process_is_named_by_the_heartbeat_check(tmp_path):
    rcs, logs, seconds = _run_pair(tmp_path, "kill", "barrier", heartbeat=10)
    assert rcs[1] == -9 and rcs[0] != 0, (rcs, logs)
    assert seconds[0] < 60, seconds
    assert "The following tasks are unhealthy (stopped sending heartbeats):\n1\n" in logs[0]


@pytest.mark.slow
def test_a_killed_coordinator_ends_its_peer(tmp_path):
    rcs, logs, seconds = _run_pair(tmp_path, "kill", "barrier", victim=0)
    assert rcs[0] == -9 and rcs[1] != 0, (rcs, logs)
    assert seconds[1] < 60, seconds
    assert "coordination service" in logs[1], logs[1]
