#!/usr/bin/env bash
# The first thing to run on a GPU or TPU machine (about 8 minutes at most): the accelerator-marked
# tests, the fused-kernel benchmark (Pallas vs cuDNN vs XLA, seq 1k-16k, forward and
# forward+backward TFLOP/s; GPU only) and one opt_125m train step at its preset batch (192 x 512),
# all written to one JSON results file.
#
#   bash benchmarks/accelerator_check.sh [--out accelerator_check.json] [--dry-run]
#
# Exits non-zero, loudly, when JAX sees no GPU or TPU. --dry-run checks the script itself on CPU:
# collects the accelerator tests, checks the benchmark parses, runs a 1-layer train step on 2 x 64
# tokens, and writes the same results file.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=accelerator_check.json
DRY=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --out) OUT="$2"; shift 2 ;;
    --dry-run) DRY=1; shift ;;
    *) echo "usage: $0 [--out FILE] [--dry-run]" >&2; exit 2 ;;
  esac
done
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

if [[ $DRY == 1 ]]; then
  export JAX_PLATFORMS=cpu
  BACKEND=cpu
else
  BACKEND=$(python -c "import jax; print(jax.default_backend())" 2>/dev/null | tail -1)
  if [[ "$BACKEND" != "gpu" && "$BACKEND" != "tpu" ]]; then
    echo "ERROR: accelerator_check.sh needs a GPU or TPU, but JAX's default backend is" \
         "'${BACKEND:-unknown}'. (Use --dry-run to check the script on CPU.)" >&2
    exit 1
  fi
fi
echo "== backend: $BACKEND (dry run: $DRY)"

# 1. Accelerator-marked tests (~2 min budget).
echo "== pytest -m requires_accelerator"
if [[ $DRY == 1 ]]; then
  timeout 120 python -m pytest -q -n 0 -m requires_accelerator --collect-only tests \
    > "$TMP/tests.log" 2>&1
else
  timeout 150 python -m pytest -q -n 0 -m requires_accelerator tests > "$TMP/tests.log" 2>&1
fi
TESTS_RC=$?
tail -3 "$TMP/tests.log"

# 2. Fused-kernel benchmark, GPU only (~3 min budget).
echo "== bench_flash_attention"
if [[ $DRY == 1 ]]; then
  python -m py_compile benchmarks/bench_flash_attention.py && python benchmarks/bench_flash_attention.py --help > /dev/null
  FLASH_RC=$?
elif [[ "$BACKEND" == "gpu" ]]; then
  timeout 200 python benchmarks/bench_flash_attention.py --seqs 1024,2048,4096,8192,16384 \
    --head_dims 64,128 --iters 5 --json "$TMP/flash.json" 2>&1 | tee "$TMP/flash.log"
  FLASH_RC=${PIPESTATUS[0]}
else
  echo "skipped: the Pallas/cuDNN comparison is GPU-only" | tee "$TMP/flash.log"
  FLASH_RC=0
fi

# 3. One opt_125m train step at its preset batch (~2 min budget: compile + 3 steps).
echo "== opt_125m train step"
SMOKE=""
[[ $DRY == 1 ]] && SMOKE="--smoke"
timeout 180 python benchmarks/train_step_check.py --config configs/opt_125m.py:softmax1 \
  --steps 3 $SMOKE --json "$TMP/train.json" 2>&1 | tail -3
TRAIN_RC=${PIPESTATUS[0]}

python - "$OUT" "$TMP" "$BACKEND" "$DRY" "$TESTS_RC" "$FLASH_RC" "$TRAIN_RC" <<'PY'
import json, os, sys
out, tmp, backend, dry, *rcs = sys.argv[1:]
def load(name):
  p = os.path.join(tmp, name)
  return json.load(open(p)) if os.path.exists(p) else None
def tail(name, n=5):
  p = os.path.join(tmp, name)
  return open(p).read().splitlines()[-n:] if os.path.exists(p) else []
res = {"backend": backend, "dry_run": dry == "1",
       "tests": {"rc": int(rcs[0]), "tail": tail("tests.log")},
       "flash_attention": {"rc": int(rcs[1]), "results": load("flash.json"), "tail": tail("flash.log", 3)},
       "train_step_opt_125m": {"rc": int(rcs[2]), "results": load("train.json")}}
json.dump(res, open(out, "w"), indent=1)
print(f"== results written to {out}")
PY
if [[ $TESTS_RC != 0 || $FLASH_RC != 0 || $TRAIN_RC != 0 ]]; then
  echo "FAILED: tests rc=$TESTS_RC, flash benchmark rc=$FLASH_RC, train step rc=$TRAIN_RC" >&2
  exit 1
fi
echo "OK"
