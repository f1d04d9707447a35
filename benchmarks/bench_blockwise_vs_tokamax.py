"""Blockwise sink attention (ops.blockwise) vs tokamax's chunked XLA attention, side by side.

    python benchmarks/bench_blockwise_vs_tokamax.py [--T 4096] [--N 8] [--H 64] [--repeats 5]
           [--block_k 256] [--block_q 256]

B=1, causal, float32, softmax. Ours runs with per-head sinks (0 = Softmax_1, differentiable), which
tokamax does not have, and as plain softmax (sink -inf). Prints, for the forward and for forward +
backward (grad of sum(out * w) in q, k, v), the median time of interleaved runs and the compiled
temp memory (XLA memory_analysis), and the ratios ours / tokamax (target <= 1.0).
tokamax is an optional dependency: pip install 'outeffhop_jax[bench]'.
"""
from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from _timing import interleaved, machine  # noqa: E402
from outeffhop_jax.ops import blockwise  # noqa: E402


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--T", type=int, default=4096)
  ap.add_argument("--N", type=int, default=8)
  ap.add_argument("--H", type=int, default=64)
  ap.add_argument("--repeats", type=int, default=5)
  ap.add_argument("--block_k", type=int, default=None)  # None: the defaults of ops.blockwise
  ap.add_argument("--block_q", type=int, default=None)
  a = ap.parse_args()
  try:
    import tokamax  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise SystemExit("tokamax is not installed: pip install 'outeffhop_jax[bench]'") from e
  from absl import flags  # pylint: disable=import-outside-toplevel
  flags.FLAGS([sys.argv[0]])  # tokamax reads absl flags; this script's own flags are argparse's
  B, T, N, H = 1, a.T, a.N, a.H
  kq, kk, kv, kw = jax.random.split(jax.random.key(0), 4)
  q, k, v, w = (jax.random.normal(kk_, (B, T, N, H), jnp.float32) for kk_ in (kq, kk, kv, kw))
  sinks = {"ours sink=0": jnp.zeros((N,)), "ours softmax": jnp.full((N,), -jnp.inf)}

  # block_q only when given: older versions of the library (a "before" run) have no such argument.
  blocks = {"block_k": a.block_k, **({"block_q": a.block_q} if a.block_q else {})}
  attn = {name: (lambda q, k, v, s=s: blockwise.blockwise_attention(q, k, v, s, causal=True,
                                                                     **blocks))
          for name, s in sinks.items()}
  attn["tokamax xla_chunked"] = lambda q, k, v: tokamax.dot_product_attention(
      q, k, v, is_causal=True, implementation="xla_chunked")

  fwd = {name: jax.jit(f) for name, f in attn.items()}
  loss = lambda f: lambda q, k, v: jnp.vdot(f(q, k, v), w)
  fwd_bwd = {name: jax.jit(jax.grad(loss(f), argnums=(0, 1, 2))) for name, f in attn.items()}
  print(f"B{B} T{T} N{N} H{H} causal float32 ({machine()}), median of {a.repeats} interleaved")
  for label, fns in (("forward", fwd), ("fwd+bwd", fwd_bwd)):
    mem = {n: f.lower(q, k, v).compile().memory_analysis().temp_size_in_bytes
           for n, f in fns.items()}
    t = interleaved(fns, {n: (q, k, v) for n in fns}, repeats=a.repeats)
    ref = "tokamax xla_chunked"
    for n in fns:
      print(f"  {label:8s} {n:20s} {t[n] * 1e3:9.1f} ms  temp {mem[n] / 2**20:8.1f} MiB")
    for n in sinks:
      print(f"{label} {n} / tokamax: time {t[n] / t[ref]:.2f}x, "
            f"temp memory {mem[n] / mem[ref]:.2f}x")


if __name__ == "__main__":
  main()
