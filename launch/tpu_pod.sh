#!/usr/bin/env bash
# A Cloud TPU VM or pod slice with gcloud: create it, copy this repository to every worker, set up
# every worker, run the same training command on every worker, delete it.
#
#   launch/tpu_pod.sh [OPTIONS] SUBCOMMAND [-- nsnet_jax.main arguments]
#
# Subcommands (each prints its gcloud commands before running them):
#   create    gcloud compute tpus tpu-vm create (add --spot for a spot slice)
#   copy      pack the working tree (git-tracked and untracked-but-not-ignored files), scp it to
#             every worker (--worker=all) and unpack it in ~/REMOTE_DIR (replacing the old copy)
#   setup     on every worker: `launch/tpu_pod.sh host-setup` (idempotent, see below)
#   data      on every worker: `gcloud storage rsync` TFDS_DATA_DIR/DATASET (gs://, built once
#             with tfds build, see the README) to ~/LOCAL_DATA_DIR/DATASET. The reader is
#             array_record random access, which cannot open gs:// paths (google/array_record#120),
#             so each host reads a local copy of the same shards; rsync makes reruns cheap.
#   run       on every worker, the same command:
#               NSNET_DISTRIBUTED=1 TFDS_DATA_DIR=~/LOCAL_DATA_DIR python -m nsnet_jax.main
#                 --config=CONFIG --workdir=WORKDIR [arguments after --]
#             JAX finds its peers on a TPU slice by itself. WORKDIR must be gs://: every host
#             writes its part of each checkpoint there (process 0 writes the logs).
#   stop      on every worker, SIGTERM to nsnet_jax.main: like a preemption, the processes agree,
#             save a checkpoint and exit (a leftover process holds the TPU until it exits)
#   up        create, copy, setup
#   delete    gcloud compute tpus tpu-vm delete
#   host-setup  runs ON a worker: a Python PYTHON_VERSION venv in ~/VENV (made with uv), then
#             jax[tpu] and this project (`pip install -e .[EXTRAS]`); skipped when the venv
#             already holds this setup.cfg/pyproject.toml with the same packages.
#
# Options (or environment variables):
#   --name NAME            TPU_NAME          nsnet-pod
#   --zone ZONE            ZONE              us-central2-b
#   --accelerator-type T   ACCELERATOR_TYPE  v4-32 (4 hosts); v5litepod-16, v5p-32, v6e-16, ...
#   --version V            TPU_VERSION       tpu-ubuntu2204-base (v5e: v2-alpha-tpuv5-lite,
#                                            v5p: v2-alpha-tpuv5, v6e: v2-alpha-tpuv6e)
#   --project P            PROJECT           gcloud's default project
#   --spot                 SPOT=1            create a spot slice
#   --config FILE          CONFIG            configs/salient_fashion.py
#   --workdir gs://...     WORKDIR           (required by run)
#   --data-dir gs://...    TFDS_DATA_DIR     the built datasets on the bucket (required by data)
#   --dataset NAME         DATASET           salient_fashion (a folder under TFDS_DATA_DIR)
#   --dry-run              DRY_RUN=1         print every command instead of running it
#   REMOTE_DIR=nsnet-jax VENV=nsnet-venv PYTHON_VERSION=3.12 EXTRAS=video JAX_TPU='jax[tpu]'
#   LOCAL_DATA_DIR=tensorflow_datasets (relative to each worker's home)
#   ALLOW_LOCAL_PATHS=1    let run and data use non-gs:// paths (single-host TPU VMs only)
#
# Example:
#   export TPU_NAME=nsnet-v4 ZONE=us-central2-b ACCELERATOR_TYPE=v4-32
#   export TFDS_DATA_DIR=gs://MY_BUCKET/tensorflow_datasets WORKDIR=gs://MY_BUCKET/nsnet/run1
#   launch/tpu_pod.sh up
#   launch/tpu_pod.sh data
#   launch/tpu_pod.sh run -- --config.stage=all
#   launch/tpu_pod.sh delete
set -euo pipefail

usage() { sed -n '2,52s/^# \{0,1\}//p' "$0"; }

name="${TPU_NAME:-nsnet-pod}"
zone="${ZONE:-us-central2-b}"
accelerator="${ACCELERATOR_TYPE:-v4-32}"
version="${TPU_VERSION:-tpu-ubuntu2204-base}"
project="${PROJECT:-}"
spot="${SPOT:-0}"
config="${CONFIG:-configs/salient_fashion.py}"
workdir="${WORKDIR:-}"
data_dir="${TFDS_DATA_DIR:-}"
dataset="${DATASET:-salient_fashion}"
local_data="${LOCAL_DATA_DIR:-tensorflow_datasets}"
dry_run="${DRY_RUN:-0}"
remote_dir="${REMOTE_DIR:-nsnet-jax}"
venv="${VENV:-nsnet-venv}"
python_version="${PYTHON_VERSION:-3.12}"
extras="${EXTRAS:-video}"
jax_tpu="${JAX_TPU:-jax[tpu]}"
allow_local="${ALLOW_LOCAL_PATHS:-0}"

subcommand=""
while (($#)); do
  case "$1" in
    --name) name="$2"; shift 2 ;;
    --zone) zone="$2"; shift 2 ;;
    --accelerator-type) accelerator="$2"; shift 2 ;;
    --version) version="$2"; shift 2 ;;
    --project) project="$2"; shift 2 ;;
    --spot) spot=1; shift ;;
    --config) config="$2"; shift 2 ;;
    --workdir) workdir="$2"; shift 2 ;;
    --data-dir) data_dir="$2"; shift 2 ;;
    --dataset) dataset="$2"; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    -h | --help) usage; exit 0 ;;
    --) shift; break ;;
    -*) echo "tpu_pod.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *)
      if [[ -n "$subcommand" ]]; then
        echo "tpu_pod.sh: one subcommand at a time ('$subcommand', then '$1'); see --help" >&2
        exit 2
      fi
      subcommand="$1"; shift ;;
  esac
done
main_args=("$@")  # whatever followed `--`, passed to nsnet_jax.main
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Shell-quote words only where needed, so printed commands stay readable and can be pasted.
quote() {
  local out="" word
  for word in "$@"; do
    if [[ "$word" =~ ^[A-Za-z0-9_./:=@,+%^-]+$ ]]; then
      out+="$word "
    elif [[ "$word" =~ ^(--[A-Za-z0-9_.-]+=)(.*)$ ]]; then  # --flag='a value'
      local value="${BASH_REMATCH[2]}"
      out+="${BASH_REMATCH[1]}'${value//\'/\'\\\'\'}' "
    else
      out+="'${word//\'/\'\\\'\'}' "
    fi
  done
  printf '%s' "${out% }"
}

# Every command that changes anything goes through here: printed, then run unless --dry-run.
run() {
  printf '+ %s\n' "$(quote "$@")"
  if [[ "$dry_run" != 1 ]]; then
    "$@"
  fi
}

gcloud_tpu() {  # gcloud compute tpus tpu-vm VERB NAME ... with the zone and project flags
  local verb="$1"
  shift
  local cmd=(gcloud compute tpus tpu-vm "$verb" "$@" "--zone=${zone}")
  if [[ -n "$project" ]]; then
    cmd+=("--project=${project}")
  fi
  run "${cmd[@]}"
}

on_all_workers() {  # the same shell command on every host of the slice
  gcloud_tpu ssh "$name" --worker=all "--command=$1"
}

do_create() {
  local flags=("--accelerator-type=${accelerator}" "--version=${version}")
  if [[ "$spot" == 1 ]]; then
    flags+=(--spot)
  fi
  gcloud_tpu create "$name" "${flags[@]}"
}

do_copy() {
  local tarball="${TMPDIR:-/tmp}/${name}-nsnet-jax.tar.gz"
  # Tracked plus untracked-but-not-ignored files that exist: what you are running, no caches.
  printf '+ (cd %s && git ls-files -z --cached --others --exclude-standard | <existing files> |' \
    "$(quote "$repo")"
  printf ' tar --null -T - -czf %s)\n' "$(quote "$tarball")"
  if [[ "$dry_run" != 1 ]]; then
    (
      cd "$repo"
      git ls-files -z --cached --others --exclude-standard |
        while IFS= read -r -d '' f; do
          if [[ -f "$f" ]]; then printf '%s\0' "$f"; fi
        done |
        tar --null -T - -czf "$tarball"
    )
  fi
  gcloud_tpu scp "$tarball" "${name}:nsnet-jax.tar.gz" --worker=all
  on_all_workers "rm -rf ${remote_dir} && mkdir -p ${remote_dir} && tar -xzf nsnet-jax.tar.gz -C ${remote_dir} && rm nsnet-jax.tar.gz"
}

do_setup() {
  on_all_workers "cd ${remote_dir} && VENV=${venv} PYTHON_VERSION=${python_version} EXTRAS=${extras} JAX_TPU=$(quote "$jax_tpu") bash launch/tpu_pod.sh host-setup"
}

host_setup() {  # on a worker, inside ~/REMOTE_DIR
  local venv_path="${HOME}/${venv}" stamp want
  stamp="${venv_path}/.nsnet-setup"
  want="$(cat setup.cfg pyproject.toml | sha256sum | cut -c1-16) ${jax_tpu} .[${extras}] py${python_version}"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    echo "$(hostname): already set up (${venv_path})"
    return
  fi
  export PATH="${HOME}/.local/bin:${PATH}"
  if ! command -v uv >/dev/null; then
    python3 -m pip install --user --quiet uv
  fi
  if [[ ! -x "${venv_path}/bin/python" ]]; then
    uv venv --python "$python_version" "$venv_path"
  fi
  uv pip install --python "${venv_path}/bin/python" --upgrade "$jax_tpu" -e ".[${extras}]"
  "${venv_path}/bin/python" -c 'import jax; print(jax.__version__, jax.devices()[0].platform)'
  echo "$want" >"$stamp"
  echo "$(hostname): set up (${venv_path})"
}

require_gs() {  # VAR_NAME VALUE: a path every host of a pod can reach
  if [[ -z "$2" ]]; then
    echo "tpu_pod.sh ${subcommand}: set $1" >&2
    exit 2
  fi
  if [[ "$allow_local" != 1 && "$2" != gs://* ]]; then
    echo "tpu_pod.sh ${subcommand}: $1='$2' is not a gs:// path; every host of a pod must" \
      "reach it (ALLOW_LOCAL_PATHS=1 on a single-host VM)" >&2
    exit 2
  fi
}

do_data() {
  require_gs "TFDS_DATA_DIR (--data-dir)" "$data_dir"
  on_all_workers "mkdir -p ${local_data}/${dataset} && gcloud storage rsync --recursive $(quote "${data_dir%/}/${dataset}") ${local_data}/${dataset}"
}

do_run() {
  require_gs "WORKDIR (--workdir)" "$workdir"
  local cmd
  cmd="cd ${remote_dir} && NSNET_DISTRIBUTED=1 TFDS_DATA_DIR=\$HOME/${local_data}"
  cmd+=" \$HOME/${venv}/bin/python -m nsnet_jax.main"
  cmd+=" $(quote "--config=${config}" "--workdir=${workdir}")"
  cmd+=" --config.data.data_dir=\$HOME/${local_data}"
  if ((${#main_args[@]})); then
    cmd+=" $(quote "${main_args[@]}")"
  fi
  on_all_workers "$cmd"
}

do_stop() {
  on_all_workers "pkill -TERM -f 'nsnet_jax[.]main' || true"
}

do_delete() {
  gcloud_tpu delete "$name" --quiet
}

case "$subcommand" in
  create) do_create ;;
  copy) do_copy ;;
  setup) do_setup ;;
  data) do_data ;;
  run) do_run ;;
  stop) do_stop ;;
  up) do_create; do_copy; do_setup ;;
  delete) do_delete ;;
  host-setup) host_setup ;;
  "") usage; exit 2 ;;
  *) echo "tpu_pod.sh: unknown subcommand '$subcommand' (see --help)" >&2; exit 2 ;;
esac
