#!/usr/bin/env bash
# Runs train.py on every worker of a TPU VM at once (multi-host: one process per host).
#   tpu/run_on_workers.sh NAME ZONE --config configs/opt_125m.py:softmax1 --workdir gs://b/run ...
# jax.distributed.initialize() auto-detects the slice on TPU VMs; the workdir must be shared
# storage (a gs:// bucket) so that every host writes its shards of the same checkpoint.
# Re-running the same command resumes from the latest checkpoint (e.g. after a preemption).
set -euo pipefail
NAME=${1:?usage: run_on_workers.sh NAME ZONE TRAIN_ARGS...}
ZONE=${2:?zone}
shift 2
ARGS=$(printf ' %q' "$@")
gcloud compute tpus tpu-vm ssh "$NAME" --zone="$ZONE" --worker=all --command="
  cd ~/outeffhop_jax && python3 train.py --config.distributed.initialize=True $ARGS \
    2>&1 | tee -a ~/train.log"
