"""Command line: `python -m nsnet_jax.main --config=configs/NAME.py --workdir=DIR [--config.x=y]`.

Multi-host: pass --distributed (or set NSNET_DISTRIBUTED=1). `jax.distributed.initialize` then runs
before anything else touches JAX; on Cloud TPU and SLURM it finds its peers by itself, elsewhere
give --coordinator_address, --num_processes and --process_id.
"""

from __future__ import annotations

import logging
import os
import sys

from absl import app, flags
from ml_collections import config_flags

from nsnet_jax.cli import quiet_library_logging

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (configs/NAME.py).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and results.")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed",
    os.environ.get("NSNET_DISTRIBUTED", "0") == "1",
    "Call jax.distributed.initialize first (multi-host).",
)
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv: list[str]) -> None:
    del argv
    import jax

    if _DISTRIBUTED.value:
        jax.distributed.initialize(
            coordinator_address=_COORDINATOR.value,
            num_processes=_NUM_PROCESSES.value,
            process_id=_PROCESS_ID.value,
        )
    quiet_library_logging()
    from jax.experimental import multihost_utils

    from nsnet_jax.train.stages import train_and_evaluate

    logging.getLogger("nsnet_jax").info(
        "process %d/%d, %d local / %d global devices (%s)",
        jax.process_index(), jax.process_count(), jax.local_device_count(), jax.device_count(),
        jax.default_backend(),
    )  # fmt: skip
    summaries = train_and_evaluate(_CONFIG.value, _WORKDIR.value)
    if "eval" in summaries and jax.process_index() == 0 and "rows" in summaries["eval"]:
        from nsnet_jax.evaluation.evaluate import markdown_table

        print(markdown_table(summaries["eval"]), flush=True)
    preempted = any(s.get("preempted") for s in summaries.values() if isinstance(s, dict))
    multihost_utils.sync_global_devices("exit")  # no process leaves while others still save
    if preempted:
        sys.exit(143)


if __name__ == "__main__":
    app.run(main)
