"""softmax1 vs jax.nn.softmax, forward + backward, [32, 12, 512, 512] float32, interleaved runs.

Usage: python benchmarks/bench_softmax1.py [--shape 32,12,512,512] [--repeats 7]
Prints the median time of each and the ratio softmax1 / softmax (target <= 1.05).
"""
from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp

import outeffhop_jax as oe
from _timing import fwd_bwd, interleaved, machine


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--shape", default="32,12,512,512")
  parser.add_argument("--repeats", type=int, default=7)
  args = parser.parse_args()
  shape = tuple(int(s) for s in args.shape.split(","))
  kx, kw = jax.random.split(jax.random.key(0))
  x = jax.random.normal(kx, shape, jnp.float32) * 3
  w = jax.random.normal(kw, shape, jnp.float32)
  fns = {"softmax": fwd_bwd(lambda x: jax.nn.softmax(x, axis=-1)),
         "softmax1": fwd_bwd(lambda x: oe.softmax1(x, axis=-1))}
  t = interleaved(fns, {k: (x, w) for k in fns}, repeats=args.repeats)
  print(f"machine: {machine()}  shape={shape} float32 forward+backward")
  for k, v in t.items():
    print(f"  {k:9s} {v * 1e3:9.1f} ms")
  print(f"ratio softmax1/softmax = {t['softmax1'] / t['softmax']:.3f}  (target <= 1.05)")


if __name__ == "__main__":
  main()
