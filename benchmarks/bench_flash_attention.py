"""Pallas sink flash attention vs cuDNN and XLA attention on a GPU: forward and forward+backward.

  python benchmarks/bench_flash_attention.py [--seqs 1024,2048,4096,8192,16384] [--head_dims 64,128]
                                             [--json results.json]

bf16, tokens per step fixed at --tokens (batch = tokens / seq), --model_dim / head_dim heads.
Rows: ours with sink 0 (softmax_1), ours without sink (plain softmax, the like-for-like case),
jax.nn.dot_product_attention(implementation="cudnn") and (implementation="xla"), all plain
softmax except ours+sink. TFLOP/s count the matmuls: forward 4·B·N·T·S·H (halved when causal),
backward 2.5× forward. Ratios are ours / other (> 1: ours is faster).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from outeffhop_jax.kernels import flash_attention  # noqa: E402


def attention_fns(num_heads):
  sink_zero = jnp.zeros((num_heads,), jnp.float32)
  return {
      "ours+sink": lambda q, k, v, causal: flash_attention(q, k, v, sinks=sink_zero,
                                                           causal=causal, backend="triton"),
      "ours": lambda q, k, v, causal: flash_attention(q, k, v, causal=causal, backend="triton"),
      "cudnn": lambda q, k, v, causal: jax.nn.dot_product_attention(
          q, k, v, is_causal=causal, implementation="cudnn"),
      "xla": lambda q, k, v, causal: jax.nn.dot_product_attention(
          q, k, v, is_causal=causal, implementation="xla"),
  }


def time_fn(fn, args, iters):
  """Median wall time (s) of a jitted call, after a compile + warm-up call."""
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(iters):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def bench_one(name, attn, q, k, v, causal, iters):
  """(forward TFLOP/s, forward+backward TFLOP/s) or Nones when this implementation fails."""
  B, T, N, H = q.shape
  fwd_flops = 4 * B * N * T * k.shape[1] * H * (0.5 if causal else 1.0)
  fwd = jax.jit(lambda q, k, v: attn(q, k, v, causal))
  loss = lambda q, k, v: jnp.sum(attn(q, k, v, causal).astype(jnp.float32))
  fwd_bwd = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
  out = []
  for fn, flops in ((fwd, fwd_flops), (fwd_bwd, 3.5 * fwd_flops)):
    try:
      out.append(flops / time_fn(fn, (q, k, v), iters) / 1e12)
    except Exception as e:  # e.g. out of memory for XLA at long sequences, cuDNN unavailable
      print(f"  {name}: failed ({type(e).__name__}: {str(e).splitlines()[0][:100]})")
      out.append(None)
  return out


def fmt(x):
  return "   -  " if x is None else f"{x:6.1f}"


def ratio(a, b):
  return "   -  " if a is None or b is None else f"{a / b:5.2f}x"


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--seqs", default="1024,2048,4096,8192,16384")
  parser.add_argument("--head_dims", default="64,128")
  parser.add_argument("--tokens", type=int, default=16384, help="batch * seq per step")
  parser.add_argument("--model_dim", type=int, default=2048, help="heads = model_dim / head_dim")
  parser.add_argument("--iters", type=int, default=10)
  parser.add_argument("--json", default=None, help="also write every row (TFLOP/s) to this file")
  args = parser.parse_args()
  if jax.default_backend() != "gpu":
    raise SystemExit(f"bench_flash_attention needs a GPU (default backend is "
                     f"{jax.default_backend()!r}); nothing to measure here.")
  print(f"device: {jax.devices()[0].device_kind}, bf16, tokens/step {args.tokens}")
  print(f"{'seq':>6} {'H':>4} {'causal':>6} {'impl':>10} {'fwd TF/s':>8} {'f+b TF/s':>8}")
  rows = []
  for head_dim in map(int, args.head_dims.split(",")):
    num_heads = args.model_dim // head_dim
    for seq in map(int, args.seqs.split(",")):
      batch = max(1, args.tokens // seq)
      keys = jax.random.split(jax.random.key(0), 3)
      q, k, v = (jax.random.normal(key, (batch, seq, num_heads, head_dim), jnp.bfloat16)
                 for key in keys)
      for causal in (False, True):
        results = {name: bench_one(name, fn, q, k, v, causal, args.iters)
                   for name, fn in attention_fns(num_heads).items()}
        rows.extend({"seq": seq, "head_dim": head_dim, "causal": causal, "impl": name,
                     "fwd_tflops": f, "fwd_bwd_tflops": fb} for name, (f, fb) in results.items())
        for name, (fwd, fwd_bwd) in results.items():
          print(f"{seq:>6} {head_dim:>4} {causal!s:>6} {name:>10} {fmt(fwd):>8} "
                f"{fmt(fwd_bwd):>8}")
        ours = results["ours"]
        for other in ("cudnn", "xla"):
          print(f"{'':>6} {'':>4} {'':>6} {'ours/' + other:>10} {ratio(ours[0], results[other][0]):>8}"
                f" {ratio(ours[1], results[other][1]):>8}")
  if args.json:
    import json  # pylint: disable=import-outside-toplevel
    with open(args.json, "w") as f:
      json.dump({"device": jax.devices()[0].device_kind, "rows": rows}, f, indent=1)


if __name__ == "__main__":
  main()
