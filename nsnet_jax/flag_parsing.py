"""absl flag parsing that every command shares, below the library so that the commands inside
`input_pipeline` can use it too: stray positional arguments are an error, and `run_tool` runs a
command that takes no config (`nsnet_jax.cli.run` is the one for commands that take a config).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable

from absl import app, flags

Tool = Callable[[flags.FlagValues, list[str]], "int | None"]


def config_file(value: str) -> str:
    """A --config value `configs/NAME.py[:ARG]`: the file of that path when it exists here (the
    repo root), else the installed nsnet_jax.configs' NAME.py (an installed copy run elsewhere)."""
    path, sep, arg = value.partition(":")
    relative = os.path.normpath(path)
    if os.path.exists(path) or not relative.startswith("configs" + os.sep):
        return value
    spec = importlib.util.find_spec("nsnet_jax.configs")
    if spec is None or not spec.submodule_search_locations:
        return value
    installed = os.path.join(spec.submodule_search_locations[0], relative[len("configs") + 1 :])
    return installed + sep + arg if os.path.isfile(installed) else value


def config_files_in(argv: list[str]) -> list[str]:
    """argv with each --config value passed through `config_file`."""
    out = list(argv)
    for i, arg in enumerate(out):
        for flag in ("--config=", "-config="):
            if arg.startswith(flag):
                out[i] = flag + config_file(arg[len(flag) :])
        if arg in ("--config", "-config") and i + 1 < len(out):
            out[i + 1] = config_file(out[i + 1])
    return out


def reject_stray_arguments(argv: list[str]) -> None:
    """absl leaves positional arguments to the program; none of ours takes any."""
    stray = argv[1:]
    if stray:
        hint = ""
        if any("=" in a and not a.startswith("-") for a in stray):
            hint = "; a config override needs two dashes, e.g. --config.model.num_select=4"
        raise app.UsageError(f"unexpected argument(s) {stray}{hint}")


def run_tool(
    main: Tool,
    define: Callable[[flags.FlagValues], None],
    argv: list[str] | None = None,
    *,
    doc: str | None = None,
    positional: bool = False,
) -> int:
    """A command that takes no config (dataset tools, input benches, weight conversion, studies).

    The same absl flags as `cli.run` (--name=value, --name value, --[no]bool, --help), parsed into
    a FlagValues of the command's own, so that `main(argv)` can run again in one process (tests).
    `define(fv)` defines the command's flags on `fv`; `main(fv, args)` gets them and the positional
    arguments (none unless `positional`). `argv` leaves out the program name (default
    sys.argv[1:]). Returns main's exit code; a flag error, or an `app.UsageError` from main,
    exits 1 with its message.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    fv = flags.FlagValues()
    define(fv)
    if any(a in ("-h", "--help", "-help", "--helpshort", "--helpfull") for a in argv):
        print((doc or "").strip() + "\n\nflags:\n" + fv.get_help(include_special_flags=False))
        raise SystemExit(0)
    try:
        args = fv([sys.argv[0], *argv])[1:]
        if not positional:
            reject_stray_arguments(["", *args])
    except (flags.Error, app.UsageError) as e:
        sys.stderr.write(f"FATAL Flags parsing error: {e}\nPass --help to see help on flags.\n")
        raise SystemExit(1) from None
    try:
        return main(fv, args) or 0
    except app.UsageError as e:  # the command's own check of its arguments, as app.run has it
        sys.stderr.write(f"usage error: {e}\nPass --help to see help on flags.\n")
        raise SystemExit(1) from None
