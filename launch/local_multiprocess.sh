#!/usr/bin/env bash
# N JAX processes on this machine, each with M CPU devices, talking over 127.0.0.1 (gloo): the way
# to debug multi-host code without a pod. Every process runs the same nsnet_jax.main command.
#
#   launch/local_multiprocess.sh [-n PROCESSES] [-d DEVICES] [-p PORT] [-t SECONDS] [-l LOG_DIR] \
#       [--dry-run] [--] --config=configs/NAME.py --workdir=DIR [--config.x=y ...]
#
# Everything after the options goes to `python -m nsnet_jax.main` unchanged, plus --distributed
# --coordinator_address=127.0.0.1:PORT --num_processes=N --process_id=I.
# Environment defaults: NUM_PROCESSES=2 DEVICES_PER_PROCESS=2 PORT=(a free one) TIMEOUT=1800
# LOG_DIR=(a new temporary folder) PYTHON=python3 DRY_RUN=0 COMPILATION_CACHE=0 (see below).
# Each process writes LOG_DIR/process_I.log. The script waits for all of them; if one fails or the
# timeout passes, it stops the others (a peer would otherwise wait forever in a collective) and exits
# with the first failure's status (124 for a timeout).
# Example (the tiny test config; build its dataset first):
#   launch/local_multiprocess.sh -n 2 -d 2 -- --config=tests/tiny_train_config.py \
#       --workdir=/tmp/nsnet_local --config.data.data_dir=/tmp/tfds --config.stage=recognizer
set -euo pipefail

usage() { sed -n '2,17s/^# \{0,1\}//p' "$0"; }

num_processes="${NUM_PROCESSES:-2}"
devices="${DEVICES_PER_PROCESS:-2}"
port="${PORT:-}"
timeout_s="${TIMEOUT:-1800}"
log_dir="${LOG_DIR:-}"
python="${PYTHON:-python3}"
dry_run="${DRY_RUN:-0}"

while (($#)); do
  case "$1" in
    -n) num_processes="$2"; shift 2 ;;
    -d) devices="$2"; shift 2 ;;
    -p) port="$2"; shift 2 ;;
    -t) timeout_s="$2"; shift 2 ;;
    -l) log_dir="$2"; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    -h | --help) usage; exit 0 ;;
    --) shift; break ;;
    *) break ;;
  esac
done

for value in "$num_processes" "$devices" "$timeout_s"; do
  if ! [[ "$value" =~ ^[1-9][0-9]*$ ]]; then
    echo "local_multiprocess.sh: '$value' is not a positive integer (see --help)" >&2
    exit 2
  fi
done

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -z "$port" ]]; then
  port="$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
fi
if [[ -z "$log_dir" ]]; then
  log_dir="$(mktemp -d "${TMPDIR:-/tmp}/nsnet_local.XXXXXX")"
fi
mkdir -p "$log_dir"

# Each process gets exactly M CPU devices: drop any device count inherited from the caller.
xla_flags="$(printf '%s' "${XLA_FLAGS:-}" | sed -E 's/--xla_force_host_platform_device_count=[0-9]+//g')"
export XLA_FLAGS="${xla_flags} --xla_force_host_platform_device_count=${devices}"
export JAX_NUM_CPU_DEVICES="$devices"
export JAX_PLATFORMS="${JAX_PLATFORMS:-cpu}"
export PYTHONPATH="${repo}${PYTHONPATH:+:${PYTHONPATH}}"
# No persistent compilation cache by default: in a multi-process run its hits differ between
# processes (one loads a program in a second, its peer compiles it for a minute), and a peer that
# reaches a collective more than 30 s before the other fails in gloo's rendezvous
# ("GetKeyValue() timed out ... cpu:gloo/..."). COMPILATION_CACHE=1 keeps the caller's setting.
if [[ "${COMPILATION_CACHE:-0}" != 1 ]]; then
  export JAX_ENABLE_COMPILATION_CACHE=false
fi

pids=()
stop_all() {
  local pid
  for pid in "${pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
}
trap 'stop_all; exit 130' INT
trap 'stop_all; exit 143' TERM

echo "local_multiprocess: ${num_processes} processes x ${devices} CPU devices," \
  "coordinator 127.0.0.1:${port}, logs in ${log_dir}"
for ((i = 0; i < num_processes; i++)); do
  cmd=(timeout --signal=TERM --kill-after=30 "$timeout_s"
    "$python" -m nsnet_jax.main "$@" --distributed "--coordinator_address=127.0.0.1:${port}"
    "--num_processes=${num_processes}" "--process_id=${i}")
  if [[ "$dry_run" == 1 ]]; then
    printf '%q ' "${cmd[@]}"
    printf '> %q 2>&1\n' "${log_dir}/process_${i}.log"
    continue
  fi
  "${cmd[@]}" >"${log_dir}/process_${i}.log" 2>&1 &
  pids+=("$!")
done
[[ "$dry_run" == 1 ]] && exit 0

# Poll rather than `wait -n`, so this runs on any bash >= 4; stop everyone at the first failure.
status=0
declare -A finished=()
while ((${#finished[@]} < num_processes)); do
  for i in "${!pids[@]}"; do
    [[ -n "${finished[$i]:-}" ]] && continue
    kill -0 "${pids[$i]}" 2>/dev/null && continue
    rc=0
    wait "${pids[$i]}" || rc=$?
    finished[$i]="$rc"
    if ((rc != 0)); then
      echo "local_multiprocess: process ${i} exited with status ${rc}" >&2
      if ((status == 0)); then
        status="$rc"
        stop_all
      fi
    fi
  done
  sleep 0.5
done

if ((status != 0)); then
  for i in "${!pids[@]}"; do
    if [[ "${finished[$i]}" != 0 ]]; then
      echo "---- tail of ${log_dir}/process_${i}.log (status ${finished[$i]}) ----" >&2
      tail -n 30 "${log_dir}/process_${i}.log" >&2 || true
    fi
  done
  exit "$status"
fi
echo "local_multiprocess: all ${num_processes} processes finished; logs in ${log_dir}"
