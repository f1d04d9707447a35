"""Ahead-of-time compile of the Pallas sink attention for a named TPU topology, on any machine.

`libtpu` (pip install "jax[tpu]") carries the TPU compiler, so a CPU-only host can compile for a
TPU slice it does not have. The kernels run under shard_map (batch over the mesh's "data" axis):
Mosaic kernels are per-device programs and cannot be partitioned by GSPMD themselves.

  JAX_PLATFORMS=cpu python tpu/aot_compile_attention.py --topology v5e:2x2 --kernel flash

Prints one "compiled <kernel> <fwd|fwd+bwd> ..." line per compiled function and the Mosaic kernel
names found in the compiled HLO; exits non-zero on any failure.
"""
from __future__ import annotations

import argparse
import os
import re
import sys

os.environ.setdefault("JAX_PLATFORMS", "cpu")  # the host runs on CPU; only the target is a TPU
# libtpu takes a machine-wide lock (/tmp/libtpu_lockfile) when loaded; compiling needs no TPU, so
# let several compiles (parallel tests, other users of the host) load it side by side.
os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from jax.experimental import topologies  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P  # noqa: E402

from outeffhop_jax import kernels  # noqa: E402


def compile_attention(topology, kernel, *, batch, seq_q, seq_k, heads, kv_heads, head_dim, dtype,
                      causal, segments, sinks, block):
  """Lowers and compiles forward and forward+backward; returns the compiled HLO texts."""
  topo = topologies.get_topology_desc(topology_name=topology, platform="tpu")
  mesh = Mesh(topo.devices, ("data",))
  fn = {"flash": kernels.flash_attention, "splash": kernels.splash_attention}[kernel]
  extra = {"backend": "tpu"} if kernel == "flash" else {}

  def attention(q, k, v, s, q_ids, kv_ids):
    return fn(q, k, v, sinks=s if sinks else None, causal=causal,
              q_segment_ids=q_ids if segments else None,
              kv_segment_ids=kv_ids if segments else None, block_q=block, block_k=block,
              interpret=False, **extra)

  batch_spec = P("data")
  sharded = jax.shard_map(attention, mesh=mesh,
                          in_specs=(batch_spec,) * 3 + (P(),) + (batch_spec,) * 2,
                          out_specs=batch_spec, check_vma=False)

  def loss(*args):
    return jnp.sum(sharded(*args).astype(jnp.float32) ** 2)

  on_batch, replicated = NamedSharding(mesh, batch_spec), NamedSharding(mesh, P())
  avals = (jax.ShapeDtypeStruct((batch, seq_q, heads, head_dim), dtype, sharding=on_batch),
           jax.ShapeDtypeStruct((batch, seq_k, kv_heads, head_dim), dtype, sharding=on_batch),
           jax.ShapeDtypeStruct((batch, seq_k, kv_heads, head_dim), dtype, sharding=on_batch),
           jax.ShapeDtypeStruct((heads,), jnp.float32, sharding=replicated),
           jax.ShapeDtypeStruct((batch, seq_q), jnp.int32, sharding=on_batch),
           jax.ShapeDtypeStruct((batch, seq_k), jnp.int32, sharding=on_batch))
  fwd = jax.jit(sharded).lower(*avals).compile()
  bwd = jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3))).lower(*avals).compile()
  return fwd.as_text(), bwd.as_text()


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--topology", default="v5e:2x2", help="e.g. v5e:2x2, v4:2x2x1, v5p:2x2x1")
  parser.add_argument("--kernel", choices=("flash", "splash"), default="flash")
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--seq_q", type=int, default=512)
  parser.add_argument("--seq_k", type=int, default=512)
  parser.add_argument("--heads", type=int, default=4)
  parser.add_argument("--kv_heads", type=int, default=2)
  parser.add_argument("--head_dim", type=int, default=128)
  parser.add_argument("--dtype", choices=("bfloat16", "float32"), default="bfloat16")
  parser.add_argument("--block", type=int, default=128)
  parser.add_argument("--causal", action=argparse.BooleanOptionalAction, default=True)
  parser.add_argument("--segments", action=argparse.BooleanOptionalAction, default=True)
  parser.add_argument("--sinks", action=argparse.BooleanOptionalAction, default=True)
  args = parser.parse_args(argv)
  settings = dict(batch=args.batch, seq_q=args.seq_q, seq_k=args.seq_k, heads=args.heads,
                  kv_heads=args.kv_heads, head_dim=args.head_dim, dtype=jnp.dtype(args.dtype),
                  causal=args.causal, segments=args.segments, sinks=args.sinks, block=args.block)
  fwd_hlo, bwd_hlo = compile_attention(args.topology, args.kernel, **settings)
  desc = " ".join(f"{k}={v}" for k, v in settings.items())
  for phase, hlo in (("fwd", fwd_hlo), ("fwd+bwd", bwd_hlo)):
    if "tpu_custom_call" not in hlo:
      raise SystemExit(f"no Mosaic kernel (tpu_custom_call) in the compiled {phase} HLO")
    names = sorted(set(re.findall(r"(?:flash_sink|splash_mha)_\w+", hlo)))
    print(f"compiled {args.kernel} {phase} for {args.topology}: {desc} kernels={names}")


if __name__ == "__main__":
  main()
