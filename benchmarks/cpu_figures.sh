#!/usr/bin/env bash
# The CPU speed figures of BENCHMARKS.md, before and after, in one run on this machine.
#
#   bash benchmarks/cpu_figures.sh [BEFORE_REV] [--quick]
#
# Each benchmark script of the current tree runs twice: on the library at BEFORE_REV (a temporary
# git worktree put first on PYTHONPATH) and on the current tree, one right after the other, so
# "before" and "after" share the machine's state. Every figure is itself a ratio of interleaved runs
# inside one process (ours vs jax.nn.softmax, vs tokamax, vs PyTorch). Writes
# ${OUT:-runs/cpu_figures}/figures_<UTC time>.txt and prints it. A script that fails on the old
# library (an API it lacked) is recorded as failed, not skipped silently. Needs torch/transformers
# (the test extra) and tokamax (the bench extra) for two of the figures; EXTRA_PYTHONPATH is appended
# to PYTHONPATH (e.g. a `pip install --target` folder holding tokamax). --quick: fewer repetitions.
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
BEFORE=${1:-}
QUICK=0
[[ "${2:-}" == "--quick" || "${1:-}" == "--quick" ]] && QUICK=1
[[ "$BEFORE" == "--quick" ]] && BEFORE=""
OUT=${OUT:-runs/cpu_figures}
mkdir -p "$OUT"
FILE="$OUT/figures_$(date -u +%Y%m%dT%H%M%SZ).txt"
export JAX_PLATFORMS=cpu
R=7; S=5; [[ $QUICK == 1 ]] && { R=3; S=3; }

BENCHES=(
  "opt_vs_torch|benchmarks/bench_opt_vs_torch.py --reps $S --steps 3"
  "softmax1_run1|benchmarks/bench_softmax1.py --repeats $R"
  "softmax1_run2|benchmarks/bench_softmax1.py --repeats $R"
  "softmax1_run3|benchmarks/bench_softmax1.py --repeats $R"
  "sparsemax|benchmarks/bench_normalizers.py --only sparsemax --repeats $R"
  "stanhop_gsh|benchmarks/bench_stanhop.py --reps $R"
  "blockwise_vs_tokamax|benchmarks/bench_blockwise_vs_tokamax.py --repeats $S"
)

run_side() {  # $1 label, $2 library root
  for entry in "${BENCHES[@]}"; do
    name=${entry%%|*}; cmd=${entry#*|}
    echo "### $1 $name: python $cmd" | tee -a "$FILE"
    start=$(date +%s)
    if PYTHONPATH="$2${EXTRA_PYTHONPATH:+:$EXTRA_PYTHONPATH}" timeout 900 python $cmd >"$FILE.part" 2>&1; then
      grep -vE "Warning|warn|^\s*$" "$FILE.part" | tail -12 | tee -a "$FILE"
    else
      echo "FAILED (exit $?): $(tail -3 "$FILE.part" | tr '\n' ' ')" | tee -a "$FILE"
    fi
    echo "($(( $(date +%s) - start )) s)" | tee -a "$FILE"
  done
}

{
  echo "# CPU figures, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "after = $(git rev-parse --short HEAD)$(git diff --quiet || echo '+uncommitted'), before = ${BEFORE:-none}"
} | tee "$FILE"

if [[ -n "$BEFORE" ]]; then
  TREE=$(mktemp -d)/before
  git worktree add -q --detach "$TREE" "$BEFORE"
  run_side "before($BEFORE)" "$TREE"
  git worktree remove --force "$TREE"
fi
run_side "after" "$REPO"
rm -f "$FILE.part"
echo "load at the end: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$FILE"
echo "wrote $FILE"
