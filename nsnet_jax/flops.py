"""`python -m nsnet_jax.flops --config=configs/NAME.py`: GMACs per video as one JSON line.

The counting lives in nsnet_jax/bench/flops.py.
"""

import sys

from nsnet_jax.bench.flops import main

if __name__ == "__main__":
    main(sys.argv)
