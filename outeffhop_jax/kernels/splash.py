"""JAX's own TPU splash attention (jax.experimental.pallas.ops.tpu.splash_attention) with sinks.

Splash takes per-head sink logits (forward and backward, dsinks included) in current JAX; this
wraps it in the [B, T, N, H] interface of `flash_attention`. It builds its block-sparse mask
tables on the host, so causal / full masks are static; segment ids are traced.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.experimental.pallas.ops.tpu import splash_attention as splash

from outeffhop_jax.kernels import _common


def splash_attention(q_BTNH, k_BSKH, v_BSKH, *, sinks=None, causal=False, q_segment_ids=None,
                     kv_segment_ids=None, scale=None, block_q=128, block_k=128, interpret=None):
  """Splash attention; same arguments and result as `flash_attention` (TPU / interpret only).

  Limits (from splash): head_dim a multiple of 128 for the best layouts, block sizes multiples of
  128 dividing the sequence lengths; without sinks a query with no visible key is undefined
  (splash requires every row to see a key); with sinks such a row outputs 0.
  """
  B, T, N, H = q_BTNH.shape
  S = k_BSKH.shape[1]
  interpret = _common.default_interpret() if interpret is None else bool(interpret)
  block_q, block_k = min(block_q, T), min(block_k, S)
  for name, block, seq in (("block_q", block_q, T), ("block_k", block_k, S)):
    if seq % block or block % 128:
      raise ValueError(f"{name}={block}: splash needs a multiple of 128 dividing {seq}.")
  if (q_segment_ids is None) != (kv_segment_ids is None):
    raise ValueError("q_segment_ids and kv_segment_ids must be given together.")
  scale = 1.0 / math.sqrt(H) if scale is None else scale
  head_mask = splash.CausalMask((T, S)) if causal else splash.FullMask((T, S))
  blocks = splash.BlockSizes(
      block_q=block_q, block_kv=block_k, block_kv_compute=block_k, block_q_dkv=block_q,
      block_kv_dkv=block_k, block_kv_dkv_compute=block_k, block_q_dq=block_q, block_kv_dq=block_k)
  kernel = splash.make_splash_mha(splash.MultiHeadMask([head_mask] * N), block_sizes=blocks,
                                  head_shards=1, q_seq_shards=1, interpret=interpret)
  sinks_N = None if sinks is None else jnp.broadcast_to(jnp.asarray(sinks, jnp.float32), (N,))
  # Splash has no scale argument: fold it into q (in float32, then back to q's dtype).
  q_BNTH = (q_BTNH.astype(jnp.float32) * scale).astype(q_BTNH.dtype).transpose(0, 2, 1, 3)
  k_BKSH, v_BKSH = k_BSKH.transpose(0, 2, 1, 3), v_BSKH.transpose(0, 2, 1, 3)

  def one(q_NTH, k_KSH, v_KSH, q_ids_T, kv_ids_S):
    ids = None if q_ids_T is None else splash.SegmentIds(q=q_ids_T, kv=kv_ids_S)
    return kernel(q_NTH, k_KSH, v_KSH, segment_ids=ids, sinks=sinks_N)

  ids = (None, None) if q_segment_ids is None else (q_segment_ids.astype(jnp.int32),
                                                    kv_segment_ids.astype(jnp.int32))
  # The batch is a vmap; sinks are closed over, so their gradient sums over the batch.
  o_BNTH = jax.vmap(one)(q_BNTH, k_BKSH, v_BKSH, *ids)
  return o_BNTH.transpose(0, 2, 1, 3).astype(q_BTNH.dtype)
