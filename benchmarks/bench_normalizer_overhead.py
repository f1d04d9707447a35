"""Step-time overhead of Softmax_1 and of the linear attention gate vs vanilla softmax, same OPT.

Model and step as in bench_opt_vs_torch.py (d=256, 4 layers, 4 heads, seq 256, batch 16, AdamW,
float32). Variants are timed interleaved; the median step time of each is compared with softmax.
Targets: softmax1 <= 3 %, linear gate <= 8 %.

    python benchmarks/bench_normalizer_overhead.py [--reps 5] [--steps 5]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys

os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_opt_vs_torch import BATCH, SEQ, jax_trainer, time_steps  # noqa: E402

VARIANTS = {
    "softmax": dict(normalizer="softmax"),
    "softmax1": dict(normalizer="softmax1"),
    "softmax+linear gate": dict(normalizer="softmax", gate="linear"),
}


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--reps", type=int, default=5)
  ap.add_argument("--steps", type=int, default=5)
  args = ap.parse_args()
  block = lambda x: x.block_until_ready()
  steps = {name: jax_trainer(**kw) for name, kw in VARIANTS.items()}
  for step in steps.values():
    time_steps(step, 2, block)  # compile + warm-up
  times = {name: [] for name in steps}
  for _ in range(args.reps):
    for name, step in steps.items():
      times[name].append(time_steps(step, args.steps, block))
  base = statistics.median(times["softmax"])
  for name, ts in times.items():
    t = statistics.median(ts)
    print(f"{name:22s} {t * 1e3:8.1f} ms/step  {BATCH * SEQ / t:8.0f} tokens/s  "
          f"overhead vs softmax {100 * (t / base - 1):+6.2f} %")


if __name__ == "__main__":
  main()
