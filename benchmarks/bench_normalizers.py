"""Registry normalizers vs jax.nn.softmax, forward + backward, side by side in one process.

Usage: python benchmarks/bench_normalizers.py [--shape 32,12,512,512] [--repeats 7]
                                              [--only softmax1,sigmoid,...]
Prints the median time of each on float32 logits of --shape (normalised over the last axis) and
its ratio to jax.nn.softmax, all measured in interleaved rounds (benchmarks/_timing.py).
"""
from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp

import outeffhop_jax as oe
from _timing import fwd_bwd, interleaved, machine

SPECS = ("softmax1", "sigmoid", "softplus", "stablemax", "softpick", "clipped:-0.025:1.0",
         "sparsemax")


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--shape", default="32,12,512,512")
  parser.add_argument("--repeats", type=int, default=7)
  parser.add_argument("--only", default=",".join(SPECS), help="comma-separated registry specs")
  args = parser.parse_args()
  shape = tuple(int(s) for s in args.shape.split(","))
  specs = [s for s in args.only.split(",") if s]
  kx, kw = jax.random.split(jax.random.key(0))
  x = jax.random.normal(kx, shape, jnp.float32) * 3
  w = jax.random.normal(kw, shape, jnp.float32)
  fns = {"softmax": fwd_bwd(lambda x: jax.nn.softmax(x, axis=-1))}
  for spec in specs:
    fns[spec] = fwd_bwd(lambda x, norm=oe.get_normalizer(spec): norm(x, axis=-1))
  t = interleaved(fns, {k: (x, w) for k in fns}, repeats=args.repeats)
  print(f"machine: {machine()}  shape={shape} float32 forward+backward, median of {args.repeats}")
  print(f"  {'normalizer':20s} {'ms':>9s}  ratio to jax.nn.softmax")
  for k, v in t.items():
    print(f"  {k:20s} {v * 1e3:9.1f}  {v / t['softmax']:.3f}")


if __name__ == "__main__":
  main()
