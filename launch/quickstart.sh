#!/usr/bin/env bash
# The main job on a fresh machine, in one command: install, get Fashion-MNIST, build the
# salient_fashion benchmark, train every stage, evaluate, print the table, draw the figures.
#   bash launch/quickstart.sh [WORKDIR] [--config.field=value ...]
set -euo pipefail
cd "$(dirname "$0")/.."
workdir=${1:-/tmp/nsnet_demo}
shift || true

if [ ! -d /usr/share/datasets/fashion-mnist ]; then
  if command -v apt-get >/dev/null && [ "$(id -u)" -eq 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist
  else
    echo "Fashion-MNIST not found in /usr/share/datasets/fashion-mnist: install the Debian" \
      "package dataset-fashion-mnist, or let TFDS download fashion_mnist (needs internet)." >&2
  fi
fi

python -m pip install -q -e .
python -m nsnet_jax.demo --workdir="$workdir" "$@"
