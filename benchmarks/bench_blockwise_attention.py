"""Blockwise (flash, pure JAX) vs reference attention: compiled temporary memory and runtime.

Usage: python benchmarks/bench_blockwise_attention.py [--seq 8192] [--heads 12] [--head-dim 64]
Memory comes from XLA's `compile().memory_analysis()` of the jitted forward and forward+backward
(target: blockwise temp memory <= 10 % of reference); runtime from interleaved runs of the forward.
"""
from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp

import outeffhop_jax as oe
from _timing import interleaved, machine


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--seq", type=int, default=8192)
  parser.add_argument("--heads", type=int, default=12)
  parser.add_argument("--head-dim", type=int, default=64)
  parser.add_argument("--batch", type=int, default=1)
  parser.add_argument("--block-k", type=int, default=512)
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()
  shape = (args.batch, args.seq, args.heads, args.head_dim)
  ks = jax.random.split(jax.random.key(0), 3)
  q, k, v = (jax.random.normal(kk, shape, jnp.float32) for kk in ks)

  def attn(impl):
    return lambda q, k, v: oe.dot_product_attention(q, k, v, is_causal=True, implementation=impl,
                                                    block_k=args.block_k)

  def loss(impl):
    return lambda q, k, v: jnp.sum(attn(impl)(q, k, v) ** 2)

  print(f"machine: {machine()}  q/k/v {shape} float32, causal, softmax1, block_k={args.block_k}")
  temps = {}
  for impl in ("reference", "blockwise"):
    fwd = jax.jit(attn(impl)).lower(q, k, v).compile().memory_analysis()
    bwd = jax.jit(jax.grad(loss(impl), argnums=(0, 1, 2))).lower(q, k, v).compile().memory_analysis()
    temps[impl] = (fwd.temp_size_in_bytes, bwd.temp_size_in_bytes)
    print(f"  {impl:9s} temp memory: forward {fwd.temp_size_in_bytes / 2**20:9.1f} MiB, "
          f"forward+backward {bwd.temp_size_in_bytes / 2**20:9.1f} MiB")
  for i, what in enumerate(("forward", "forward+backward")):
    print(f"memory ratio blockwise/reference ({what}) = {temps['blockwise'][i] / temps['reference'][i]:.3f}"
          "  (target <= 0.10)")
  fns = {impl: jax.jit(attn(impl)) for impl in ("reference", "blockwise")}
  t = interleaved(fns, {kk: (q, k, v) for kk in fns}, repeats=args.repeats)
  for kk, vv in t.items():
    print(f"  {kk:9s} forward {vv * 1e3:9.1f} ms")
  print(f"runtime ratio blockwise/reference (forward) = {t['blockwise'] / t['reference']:.3f}")


if __name__ == "__main__":
  main()
