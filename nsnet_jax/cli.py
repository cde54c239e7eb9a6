"""The command line every entry point shares: --config (+ --config.x=y overrides), --workdir where
the program writes, and --distributed (multi-host), handled the same way everywhere.

    def main(config, workdir, argv): ...
    if __name__ == "__main__":
        cli.run(main, workdir="required")

`run` parses the flags, refuses stray arguments (an override without its `--` would otherwise be
ignored silently), calls `jax.distributed.initialize` first when asked, quiets library logging,
validates the whole config before any work, and then calls `main(config, workdir, argv)`.
A `UserError` (nsnet_jax/errors.py), and an override that names no field of the config, is printed
as one line `error: ...` with exit code 2; --verbose (or NSNET_VERBOSE=1) shows the traceback.
Multi-host: pass --distributed (or set NSNET_DISTRIBUTED=1); on Cloud TPU and SLURM JAX finds its
peers by itself, elsewhere give --coordinator_address, --num_processes and --process_id. A process
that fails stops the others promptly, naming itself and its error (nsnet_jax/train/faults.py).
"""

from __future__ import annotations

import difflib
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

from absl import app, flags
from ml_collections import config_dict, config_flags

from nsnet_jax.errors import UserError, verbose
from nsnet_jax.flag_parsing import config_file, config_files_in, reject_stray_arguments

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
    flags.DEFINE_bool(
        "verbose",
        verbose([]),
        "Tracebacks for errors that are otherwise one line (also: NSNET_VERBOSE=1).",
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
    if workdir and "://" not in workdir and os.path.isfile(workdir):
        raise UserError(
            f"--workdir={workdir} is a file, not a directory: give --workdir a directory (a "
            "missing one is created), or move the file away"
        )
    return f.config, workdir


def override_error(argv: list[str], default_config: str | None) -> str | None:
    """The first --config.a.b override that names no field of the config file: the field, the
    closest valid names and the file; None when every override names a field."""
    path = default_config
    for i, arg in enumerate(argv):
        if arg.startswith(("--config=", "-config=")):
            path = arg.split("=", 1)[1]
        elif arg in ("--config", "-config") and i + 1 < len(argv):
            path = argv[i + 1]
    if path is None:
        return None
    from ml_collections.config_flags.config_flags import ConfigFileFlagParser

    try:
        config = ConfigFileFlagParser("config").parse(path)
    except Exception:  # noqa: BLE001 - the config itself is broken: absl's own error says how
        return None
    for arg in argv:
        if not arg.startswith(("--config.", "-config.")):
            continue
        field = arg.lstrip("-").split("=", 1)[0][len("config.") :]
        node: Any = config
        parts = field.split(".")
        for depth, part in enumerate(parts):
            parent = ".".join(parts[:depth])
            if not isinstance(node, config_dict.ConfigDict):
                return (
                    f"{arg}: {parent} is a value, not a section, in {path}: override "
                    f"--config.{parent} itself"
                )
            if part in node:
                node = node[part]
                continue
            what = "field" if depth == len(parts) - 1 else "section"
            names = sorted(node.keys())
            close = difflib.get_close_matches(part, names, n=3, cutoff=0.6)
            close += [n for n in names if part in n and n not in close]  # training: *_training
            prefix = f"{parent}." if parent else ""
            if close:
                hint = "did you mean " + " or ".join(prefix + c for c in close) + "?"
            else:
                hint = f"{parent or 'the config'} has: {', '.join(names)}"
            return f"{arg}: {path} has no {what} {prefix}{part}; {hint}"
    return None


def _exit_on_bad_override(argv: list[str], default_config: str | None) -> None:
    """After flag parsing failed: an override naming no field exits with one line, code 2;
    otherwise (or with --verbose) returns, and the caller re-raises the parser's error."""
    message = override_error(argv, default_config)
    if message is not None and not verbose(argv):
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


_OVERRIDE_ERRORS = (KeyError, AttributeError, IndexError, ValueError)  # ml_collections raises


def _flags_parser(default_config: str | None) -> Callable[[list[str]], list[str]]:
    """absl's parser, but an override of a field the config lacks is one line, exit code 2."""

    def parse(argv: list[str]) -> list[str]:
        try:
            return app.parse_flags_with_usage(argv)
        except _OVERRIDE_ERRORS:
            _exit_on_bad_override(argv, default_config)
            raise

    return parse


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
    `positional`: the program takes positional arguments (predict's inputs). A --config of
    `configs/NAME.py` works from an installed copy too (`flag_parsing.config_file`).
    """
    argv = config_files_in(sys.argv if argv is None else argv)
    if default_config is not None:
        default_config = config_file(default_config)
    try:  # a default config is parsed, overrides and all, as its flag is defined
        define_flags(default_config, workdir, default_workdir, config_required)
    except _OVERRIDE_ERRORS:
        _exit_on_bad_override(argv, default_config)
        raise
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
            if isinstance(e, UserError) and not flags.FLAGS.verbose:
                print(f"error: {e}", file=sys.stderr)
                raise SystemExit(e.exit_code) from None
            if getattr(e, "one_line", False) and not flags.FLAGS.verbose:  # e.g. disk full
                logging.getLogger("nsnet_jax").error("%s", e)
                raise SystemExit(1) from None
            raise

    app.run(_main, argv=argv, flags_parser=_flags_parser(default_config))
