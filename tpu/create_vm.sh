#!/usr/bin/env bash
# Creates a TPU VM (slice) for training. Usage:
#   tpu/create_vm.sh NAME [ACCELERATOR_TYPE] [ZONE] [RUNTIME_VERSION]
#   tpu/create_vm.sh outeffhop-v5e v5litepod-8 us-west4-a v2-alpha-tpuv5-lite
# Spot/preemptible: add --spot through EXTRA_FLAGS; train.py checkpoints on SIGTERM and resumes.
set -euo pipefail
NAME=${1:?usage: create_vm.sh NAME [ACCELERATOR_TYPE] [ZONE] [RUNTIME_VERSION]}
TYPE=${2:-v5litepod-8}
ZONE=${3:-us-west4-a}
RUNTIME=${4:-v2-alpha-tpuv5-lite}
gcloud compute tpus tpu-vm create "$NAME" --zone="$ZONE" --accelerator-type="$TYPE" \
  --version="$RUNTIME" ${EXTRA_FLAGS:-}
