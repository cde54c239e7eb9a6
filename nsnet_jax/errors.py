"""Errors a user fixes by changing the command, the config or the inputs.

The command line (nsnet_jax/cli.py) prints such an error as its one-line message, `error: ...`,
and exits with code 2: the message names the thing and the fix, a traceback would only bury it.
`--verbose` or NSNET_VERBOSE=1 shows the traceback anyway.
"""

from __future__ import annotations

import errno
import os
import sys


class UserError(Exception):
    """A mistake in the command, config or inputs; the message names the thing and the fix."""

    one_line = True  # printed alone, without a traceback
    exit_code = 2


def verbose(argv: list[str] | None = None) -> bool:
    """Tracebacks wanted: NSNET_VERBOSE=1, or --verbose among `argv` (before flags are parsed)."""
    if os.environ.get("NSNET_VERBOSE", "0") not in ("", "0", "false", "False"):
        return True
    args = sys.argv if argv is None else argv
    return any(a in ("--verbose", "--verbose=true", "--verbose=1", "--verbose=True") for a in args)


NO_SPACE_TEXTS = ("No space left on device", "os_error_code='28'")


def is_disk_full(error: BaseException | None) -> bool:
    """ENOSPC anywhere in the chain: an OSError, or the text of one wrapped by a worker process,
    TensorFlow, Orbax or TensorStore (checkpoints and dataset builds both meet it)."""
    seen: set[int] = set()
    stack = [error]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            return True
        if any(text in str(e) for text in NO_SPACE_TEXTS):
            return True
        stack += [e.__cause__, e.__context__, *getattr(e, "exceptions", ())]
    return False
