"""`python -m input_pipeline.bench`, kept working: see nsnet_jax/bench/input_rates.py."""

import sys

from nsnet_jax.bench.input_rates import main

if __name__ == "__main__":
    sys.exit(main())
