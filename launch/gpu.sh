#!/usr/bin/env bash
# One GPU node, all its GPUs, one process: JAX sees every visible GPU as a local device and the
# trainer's `data` mesh spans them; no jax.distributed is needed.
#
#   launch/gpu.sh [--dry-run] setup                       # once per machine (idempotent)
#   launch/gpu.sh [--dry-run] run --config=configs/NAME.py --workdir=DIR [--config.x=y ...]
#
# setup: pip install "JAX_CUDA" (default 'jax[cuda12]'; 'jax[cuda13]' for CUDA 13 drivers) and
#   this project with EXTRAS (default video) into the current Python (PYTHON, default python3);
#   pip skips what is already installed.
# run: python -m nsnet_jax.main with your arguments. CUDA_VISIBLE_DEVICES=0,1 restricts the GPUs;
#   the global batch (--config.batch_size) must divide by the number of GPUs.
# Several nodes: launch/slurm_gpu.sbatch.
set -euo pipefail

dry_run="${DRY_RUN:-0}"
python="${PYTHON:-python3}"
jax_cuda="${JAX_CUDA:-jax[cuda12]}"
extras="${EXTRAS:-video}"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

if [[ "${1:-}" == --dry-run ]]; then
  dry_run=1
  shift
fi
subcommand="${1:-}"
if (($#)); then shift; fi

run() {
  printf '+'
  printf ' %q' "$@"
  printf '\n'
  if [[ "$dry_run" != 1 ]]; then
    "$@"
  fi
}

case "$subcommand" in
  setup)
    run "$python" -m pip install --upgrade "$jax_cuda" -e "${repo}[${extras}]"
    run "$python" -c 'import jax; print(jax.__version__, jax.devices())'
    ;;
  run)
    if [[ "$dry_run" != 1 ]] && command -v nvidia-smi >/dev/null; then
      nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader
    fi
    export PYTHONPATH="${repo}${PYTHONPATH:+:${PYTHONPATH}}"
    run "$python" -m nsnet_jax.main "$@"
    ;;
  -h | --help) sed -n '2,14s/^# \{0,1\}//p' "$0" ;;
  *) sed -n '2,14s/^# \{0,1\}//p' "$0" >&2; exit 2 ;;
esac
