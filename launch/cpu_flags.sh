#!/usr/bin/env bash
# XLA:CPU flag sets for NSNet inference, each in its own process, alternated over rounds so load
# drifts on a shared machine hit all of them. Usage: bash launch/cpu_flags.sh [CONFIG] [ROUNDS]
set -euo pipefail
config=${1:-configs/activitynet.py}
rounds=${2:-2}
flag_sets=(
  ""
  "--xla_cpu_experimental_onednn_custom_call=true"
  "--xla_cpu_experimental_xnn_graph_fusion_mode=XNN_GRAPH_FUSION_MODE_GREEDY"
  "--xla_cpu_enable_fast_math=true"
  "--xla_cpu_multi_thread_eigen=false"
  # JAX 0.12's XLA:CPU (a set this jaxlib does not know prints a "failed" line)
  "--xla_cpu_experimental_ynn_fusion_type=individual_convolution"
  "--xla_cpu_experimental_onednn_fusion_type=dot,eltwise"
  "--xla_cpu_prefer_vector_width=512"
)
for ((r = 0; r < rounds; r++)); do
  for flags in "${flag_sets[@]}"; do
    XLA_FLAGS="$flags" python -m nsnet_jax.bench.cpu_serving --config="$config" \
      --paths=jax_f32 --torch=false --tf=false --onnx=false --repeats=2 2>/dev/null \
      || echo "{\"name\": \"jax_f32\", \"xla_flags\": \"$flags\", \"error\": \"failed\"}"
  done
done
