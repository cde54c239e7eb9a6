#!/usr/bin/env bash
# Succeeded by launch/gpu_suite.py; kept as its wrapper for the command the docs and older notes
# name. Runs the GPU suite (run by the lead on a lent GPU machine, from the repo root): environment,
# GPU JPEG decode and end-to-end NSNet (launch/gpu_check.py), per-stage times, the bench at
# ActivityNet shapes in bfloat16 with both train steps, float32 beside it, a batch sweep, the
# depthwise layout, and the fast tests under that machine's JAX; each step under its own timeout,
# JSON lines in OUT_DIR/suite.jsonl. The machine has JAX/CUDA and torch but no TensorFlow, TFDS or
# ml_collections: ml_collections (pure Python) travels in .device_site (and PyYAML in .device_yaml
# if missing); gpu_suite.py puts them on its steps' PYTHONPATH.
#   bash launch/device_check.sh OUT_DIR [gpu_suite.py flags, e.g. --budget_s=570]
set -uo pipefail
out=${1:?usage: launch/device_check.sh OUT_DIR [gpu_suite.py flags]}
shift
exec python3 "$(dirname "$0")/gpu_suite.py" --out="$out" "$@"
