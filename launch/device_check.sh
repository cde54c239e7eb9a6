#!/usr/bin/env bash
# The GPU session's one prepared script (run by the lead on a lent GPU machine, from the repo root):
# environment, GPU JPEG decode and end-to-end NSNet (launch/gpu_check.py), the bench at ActivityNet
# shapes in bfloat16 with MFU and both train steps, float32 beside it, and the fast tests under that
# machine's JAX. The machine has JAX/CUDA and torch but no TensorFlow, TFDS or ml_collections:
# ml_collections (pure Python) travels in .device_site (and PyYAML in .device_yaml if missing).
#   bash launch/device_check.sh OUT_DIR
set -uo pipefail
out=${1:?usage: launch/device_check.sh OUT_DIR}
mkdir -p "$out"
export PYTHONPATH="$PWD:$PWD/.device_site${PYTHONPATH:+:$PYTHONPATH}"
python3 -c "import yaml" 2>/dev/null || export PYTHONPATH="$PYTHONPATH:$PWD/.device_yaml"
py=python3
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  $py -c "import jax, flax, torch; print('jax', jax.__version__, 'flax', flax.__version__, 'torch', torch.__version__, jax.devices())"
} > "$out/env.txt" 2>&1
cat "$out/env.txt"

start=$(date +%s)
timeout 250 $py launch/gpu_check.py --out="$out" --budget_s=200 > "$out/gpu_check.log" 2>&1
echo "gpu_check rc=$? after $(( $(date +%s) - start )) s"

bench=(-m nsnet_jax.bench --config=configs/activitynet.py --batch=32 --repeats=5)
timeout 170 $py "${bench[@]}" --config.model.dtype=bfloat16 --train_step=both --torch \
  > "$out/bench_bf16.jsonl" 2> "$out/bench_bf16.err"
echo "bench bf16 rc=$? after $(( $(date +%s) - start )) s"
timeout 80 $py "${bench[@]}" --train_step=none > "$out/bench_f32.jsonl" 2> "$out/bench_f32.err"
echo "bench f32 rc=$? after $(( $(date +%s) - start )) s"

JAX_PLATFORMS=cpu timeout 100 $py -m pytest -q -n 8 -p no:cacheprovider tests/test_selection.py \
  tests/test_losses.py tests/test_models.py tests/test_backbones.py tests/test_configs.py \
  > "$out/tests_jax011.log" 2>&1
echo "tests rc=$? after $(( $(date +%s) - start )) s"
tail -3 "$out/tests_jax011.log"
grep -h '"name"' "$out"/*.jsonl | cut -c1-160 | head -60
