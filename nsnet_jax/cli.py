"""The command line every entry point shares: --config (+ --config.x=y overrides), --workdir where
the program writes, and --distributed (multi-host), handled the same way everywhere.

    def main(config, workdir, argv): ...
    if __name__ == "__main__":
        cli.run(main, workdir="required")

`run` parses the flags, refuses stray arguments (an override without its `--` would otherwise be
ignored silently), calls `jax.distributed.initialize` first when asked, quiets library logging,
validates the whole config before any work, and then calls `main(config, workdir, argv)`.
Multi-host: pass --distributed (or set NSNET_DISTRIBUTED=1); on Cloud TPU and SLURM JAX finds its
peers by itself, elsewhere give --coordinator_address, --num_processes and --process_id. A process
that fails stops the others promptly, naming itself and its error (nsnet_jax/train/faults.py).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from absl import app, flags
from ml_collections import config_flags

from nsnet_jax.flag_parsing import reject_stray_arguments

Main = Callable[[Any, "str | None", list[str]], None]


def quiet_library_logging() -> None:
    """Our progress lines at INFO; libraries (Orbax logs every save step) at WARNING."""
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.WARNING)
    ours = logging.getLogger("nsnet_jax")
    ours.setLevel(logging.INFO)
    if not ours.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        ours.addHandler(handler)
    ours.propagate = False


def define_flags(
    default_config: str | None = None,
    workdir: str = "none",
    default_workdir: str | None = None,
    config_required: bool = True,
) -> None:
    """--config, --workdir (`workdir`: 'required', 'optional' or 'none'), --distributed & co."""
    config_flags.DEFINE_config_file("config", default_config, "Config file (configs/NAME.py).")
    if workdir != "none":
        flags.DEFINE_string("workdir", default_workdir, "Directory the program writes to.")
        if workdir == "required" and default_workdir is None:
            flags.mark_flag_as_required("workdir")
    if default_config is None and config_required:
        flags.mark_flag_as_required("config")
    flags.DEFINE_bool(
        "distributed",
        os.environ.get("NSNET_DISTRIBUTED", "0") == "1",
        "Call jax.distributed.initialize first (multi-host).",
    )
    flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (--distributed).")
    flags.DEFINE_integer("num_processes", None, "Number of processes (--distributed).")
    flags.DEFINE_integer("process_id", None, "This process's index (--distributed).")
    flags.DEFINE_integer(
        "heartbeat_timeout",
        30,
        "Seconds without a heartbeat after which a process counts as dead and the others stop "
        "(--distributed; JAX's default is 100).",
    )


def setup(argv: list[str], positional: bool = False) -> tuple[Any, str | None]:
    """Distributed init (first of all JAX calls), logging, config validation; (config, workdir).

    `positional`: the program takes positional arguments (predict's inputs), so none is stray.
    """
    if not positional:
        reject_stray_arguments(argv)
    f = flags.FLAGS
    if f.distributed:
        from nsnet_jax.train import faults

        faults.initialize(f.coordinator_address, f.num_processes, f.process_id, f.heartbeat_timeout)
    quiet_library_logging()
    from nsnet_jax.config_checks import validate_config

    if f.config is not None:
        validate_config(f.config)
    workdir = f.workdir if "workdir" in f else None
    return f.config, workdir


def run(
    main: Main,
    *,
    workdir: str = "none",
    default_config: str | None = None,
    default_workdir: str | None = None,
    define_extra: Callable[[], None] | None = None,
    argv: list[str] | None = None,
    config_required: bool = True,
    positional: bool = False,
) -> None:
    """Defines the shared flags (and the program's own via `define_extra`), then runs `main`.

    `config_required=False`: --config may be left out (predict and export read the workdir's);
    `positional`: the program takes positional arguments (predict's inputs).
    """
    define_flags(default_config, workdir, default_workdir, config_required)
    if define_extra is not None:
        define_extra()

    def _main(args: list[str]) -> None:
        try:
            config, wd = setup(args, positional)
            main(config, wd, args)
        except (Exception, KeyboardInterrupt) as e:
            from nsnet_jax.train import faults

            if faults.is_multiprocess():  # an error in setup after the distributed init too
                faults.fail(e)  # tells the peers which process failed and why; does not return
            if getattr(e, "one_line", False):  # e.g. disk full: the message says it all
                logging.getLogger("nsnet_jax").error("%s", e)
                raise SystemExit(1) from None
            raise

    app.run(_main, argv=argv)
