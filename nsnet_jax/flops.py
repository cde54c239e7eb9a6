"""`python -m nsnet_jax.flops --config=configs/NAME.py`: GMACs per video as one JSON line.

The counting lives in nsnet_jax/costs/flops.py.
"""

from __future__ import annotations

import json
import sys

from nsnet_jax import cli
from nsnet_jax.costs.flops import count_gmacs


def main(argv: list[str] | None = None) -> None:
    cli.run(lambda config, workdir, args: print(json.dumps(count_gmacs(config))), argv=argv)


if __name__ == "__main__":
    main(sys.argv)
