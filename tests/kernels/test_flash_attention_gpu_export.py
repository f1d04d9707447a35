"""The Triton (Pallas GPU) kernels lower for CUDA on a CPU machine, forward and backward.

jax.export lowers for a platform without its devices; the Triton custom call carries the kernel's
Triton IR as MLIR bytecode, decoded here with jaxlib's Triton dialect to check the kernel itself.
"""
import re

import jax
import jax.numpy as jnp
import pytest
from jax._src.interpreters import mlir as jax_mlir
from jax._src.lib import triton as jax_triton
from jax._src.lib.mlir import ir

from outeffhop_jax.kernels import flash_attention

TRITON_CALL = "__gpu$xla.gpu.triton"


def export_for_cuda(fn, *avals):
  exported = jax.export.export(
      jax.jit(fn), platforms=["cuda"],
      disabled_checks=[jax.export.DisabledSafetyCheck.custom_call(TRITON_CALL)])(*avals)
  return exported.mlir_module()


def triton_kernels(module_text):
  """{kernel name: Triton IR text} for every Triton custom call in a StableHLO module."""
  ctx = jax_mlir.make_ir_context()
  jax_triton.dialect.register_dialect(ctx)
  kernels = {}
  with ctx:
    module = ir.Module.parse(module_text)

    def visit(op):
      if op.name == "stablehlo.custom_call":
        config = ir.DictAttr(op.attributes["mhlo.backend_config"])
        name = ir.StringAttr(config["name"]).value
        kernels[name] = str(ir.Module.parse(ir.StringAttr(config["ir"]).value_bytes))
      return ir.WalkResult.ADVANCE

    module.operation.walk(visit)
  return kernels


@pytest.mark.parametrize("head_dim,dtype,causal,segments", [
    (64, jnp.bfloat16, True, True),
    (128, jnp.bfloat16, False, False),
    (128, jnp.float32, True, False),
])
def test_triton_kernels_export_for_cuda(head_dim, dtype, causal, segments):
  B, T, N, K = 2, 256, 4, 2
  S = jax.ShapeDtypeStruct
  avals = (S((B, T, N, head_dim), dtype), S((B, T, K, head_dim), dtype),
           S((B, T, K, head_dim), dtype), S((N,), jnp.float32), S((B, T), jnp.int32),
           S((B, T), jnp.int32))

  def attention(q, k, v, sinks, q_ids, kv_ids):
    return flash_attention(q, k, v, sinks=sinks, causal=causal,
                           q_segment_ids=q_ids if segments else None,
                           kv_segment_ids=kv_ids if segments else None,
                           block_q=64, block_k=64, backend="triton", interpret=False)

  def grads(*args):
    loss = lambda *a: jnp.sum(attention(*a).astype(jnp.float32) ** 2)
    return jax.grad(loss, argnums=(0, 1, 2, 3))(*args)

  fwd = export_for_cuda(attention, *avals)
  assert TRITON_CALL in fwd
  fwd_kernels = triton_kernels(fwd)
  assert set(fwd_kernels) == {"flash_sink_fwd"}
  ir_fwd = fwd_kernels["flash_sink_fwd"]
  assert "tt.func" in ir_fwd and "scf.for" in ir_fwd  # the kv loop runs inside the kernel
  assert len(re.findall(r"tt\.dot ", ir_fwd)) == 2  # QKᵀ and PV
  assert f"tensor<64x{head_dim}x{'bf16' if dtype == jnp.bfloat16 else 'f32'}>" in ir_fwd
  assert ("scf.if" in ir_fwd) == segments  # block skipping on segment ranges

  bwd_kernels = triton_kernels(export_for_cuda(grads, *avals))
  assert set(bwd_kernels) == {"flash_sink_fwd", "flash_sink_bwd_dq", "flash_sink_bwd_dkv"}
  assert len(re.findall(r"tt\.dot ", bwd_kernels["flash_sink_bwd_dq"])) == 3
  assert len(re.findall(r"tt\.dot ", bwd_kernels["flash_sink_bwd_dkv"])) == 4
