"""`python -m input_pipeline.bench_video_io`, kept working: see nsnet_jax/bench/video_io.py."""

import sys

from nsnet_jax.bench.video_io import main

if __name__ == "__main__":
    sys.exit(main())
