"""A test-only program for tests/test_faults.py, run as 2 processes: the process named by
NSNET_TEST_FAULT_PROCESS (default 1) fails right after start-up (NSNET_TEST_FAULT=raise|kill) while
the other waits for it (NSNET_TEST_WAIT=barrier|collective)."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nsnet_jax import cli  # noqa: E402


def main(config, workdir, argv) -> None:
    import jax
    import numpy as np
    from jax.experimental import multihost_utils

    from nsnet_jax.train import faults

    faults.barrier("started")
    if jax.process_index() == int(os.environ.get("NSNET_TEST_FAULT_PROCESS", "1")):
        if os.environ["NSNET_TEST_FAULT"] == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        raise RuntimeError(f"injected failure in process {jax.process_index()}")
    if os.environ.get("NSNET_TEST_WAIT") == "collective":
        multihost_utils.process_allgather(np.zeros(1))  # the failed process never joins
    faults.barrier("never reached by the failed process")
    print("passed the barrier", flush=True)


if __name__ == "__main__":
    cli.run(main, default_config=str(Path(__file__).with_name("tiny_train_config.py")))
