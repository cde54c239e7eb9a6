"""`python -m nsnet_jax.bench --config=...`: see nsnet_jax/bench/run.py."""

import sys

from nsnet_jax.bench.run import main

if __name__ == "__main__":
    main(sys.argv)
