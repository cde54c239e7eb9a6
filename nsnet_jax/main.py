"""Command line: `python -m nsnet_jax.main --config=configs/NAME.py --workdir=DIR [--config.x=y]`.

Runs the stages (docs/method.md); flags shared with every entry point are in
nsnet_jax/cli.py, including --distributed for multi-host runs.
"""

from __future__ import annotations

import logging
import signal
import sys
from typing import Any

from nsnet_jax import cli


def main(config: Any, workdir: str, argv: list[str]) -> None:
    import jax

    from nsnet_jax import locking
    from nsnet_jax.evaluation.evaluate import markdown_table
    from nsnet_jax.pipeline_run import train_and_evaluate
    from nsnet_jax.train import checkpointing, faults

    logging.getLogger("nsnet_jax").info(
        "process %d/%d, %d local / %d global devices (%s)",
        jax.process_index(), jax.process_count(), jax.local_device_count(), jax.device_count(),
        jax.default_backend(),
    )  # fmt: skip
    # One writer per workdir (process 0 holds the lock for the run): a second training stops here.
    with locking.workdir_lock(workdir, enabled=jax.process_index() == 0):
        faults.barrier("workdir locked")
        summaries = train_and_evaluate(config, workdir, validate=False)  # cli.run validated it
        if "eval" in summaries and jax.process_index() == 0 and "rows" in summaries["eval"]:
            print(markdown_table(summaries["eval"]), flush=True)
        preempted = any(s.get("preempted") for s in summaries.values() if isinstance(s, dict))
        faults.barrier("exit")  # no process leaves while others still save
    if preempted:  # 143 after SIGTERM, 130 after Ctrl-C, as if the signal had ended the process
        sys.exit(128 + (checkpointing.PreemptionFlag.received or signal.SIGTERM))


if __name__ == "__main__":
    cli.run(main, workdir="required")
