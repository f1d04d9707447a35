#!/usr/bin/env bash
# Copies this checkout to every worker of a TPU VM and installs it with the TPU extra.
#   tpu/setup_workers.sh NAME [ZONE]
set -euo pipefail
NAME=${1:?usage: setup_workers.sh NAME [ZONE]}
ZONE=${2:-us-west4-a}
REPO=$(cd "$(dirname "$0")/.." && pwd)
tar -C "$REPO" --exclude=.git --exclude=workdirs -czf /tmp/outeffhop_jax.tgz .
gcloud compute tpus tpu-vm scp /tmp/outeffhop_jax.tgz "$NAME":~/ --zone="$ZONE" --worker=all
gcloud compute tpus tpu-vm ssh "$NAME" --zone="$ZONE" --worker=all --command='
  set -e
  mkdir -p ~/outeffhop_jax && tar -xzf ~/outeffhop_jax.tgz -C ~/outeffhop_jax
  cd ~/outeffhop_jax && python3 -m pip install -q -e ".[tpu]"'
