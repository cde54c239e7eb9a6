"""Console logging for the command-line programs."""

from __future__ import annotations

import logging


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
