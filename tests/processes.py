"""Test helpers: JAX worker processes on 127.0.0.1, and a metric writer that keeps nothing."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class NullWriter:
    """A CLU-style metric writer for tests that do not look at the metrics."""

    def write_scalars(self, step, scalars):
        pass

    def flush(self):
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker_env(cpu_devices: int = 2) -> dict:
    """This environment, with the repository importable and `cpu_devices` CPU devices."""
    return dict(
        os.environ, JAX_NUM_CPU_DEVICES=str(cpu_devices), JAX_PLATFORMS="cpu", PYTHONPATH=REPO,
        XLA_FLAGS=f"--xla_force_host_platform_device_count={cpu_devices}",
    )  # fmt: skip


def run_workers(source: str, args: list[list[str]], env: dict, timeout: float) -> list[dict]:
    """Runs `python -c source` once per argument list; returns each one's last `RESULT {json}`
    line in process order. A failed worker fails the test with its output; none outlives it."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", source, *a],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        for a in args
    ]
    results = []
    try:
        for p in procs:
            stdout, _ = p.communicate(timeout=timeout)
            assert p.returncode == 0, stdout[-3000:]
            line = [x for x in stdout.splitlines() if x.startswith("RESULT ")][-1]
            results.append(json.loads(line[len("RESULT ") :]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return results
