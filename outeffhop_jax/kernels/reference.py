"""Naive attention with a sink logit: the ground truth the fused kernels are tested against.

Written from the formula, independently of the kernels: materialise the [B, N, T, S] logits, append
one sink column per head, softmax over S + 1 entries, drop the sink column, multiply with V.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def attention_reference(q_BTNH, k_BSKH, v_BSKH, *, sinks=None, causal=False, q_segment_ids=None,
                        kv_segment_ids=None, scale=None):
  """o_BTNH = softmax([q·kᵀ·scale masked, sink])[:, :S] · v, computed in float32.

  q [B, T, N, H]; k, v [B, S, K, H] with N % K == 0 (GQA); sinks [N] or scalar or None (plain
  softmax); segment ids [B, T] / [B, S] int (query i sees key j iff their ids are equal);
  causal is top-left aligned (j <= i). A row with no visible key returns 0. Output in q's dtype.
  """
  B, T, N, H = q_BTNH.shape
  _, S, K, _ = k_BSKH.shape
  scale = H ** -0.5 if scale is None else scale
  # Repeat kv heads so that q head n reads kv head n // (N // K).
  k_BSNH = jnp.repeat(k_BSKH, N // K, axis=2).astype(jnp.float32)
  v_BSNH = jnp.repeat(v_BSKH, N // K, axis=2).astype(jnp.float32)
  logits_BNTS = jnp.einsum("btnh,bsnh->bnts", q_BTNH.astype(jnp.float32), k_BSNH,
                           precision=jax.lax.Precision.HIGHEST) * scale
  visible_BNTS = jnp.ones((B, 1, T, S), bool)
  if causal:
    visible_BNTS &= (jnp.arange(S)[None, :] <= jnp.arange(T)[:, None])[None, None]
  if q_segment_ids is not None:
    visible_BNTS &= (q_segment_ids[:, :, None] == kv_segment_ids[:, None, :])[:, None]
  if sinks is None:
    sink_BNT1 = jnp.full((B, N, T, 1), -jnp.inf, jnp.float32)
  else:
    sinks_N = jnp.broadcast_to(jnp.asarray(sinks, jnp.float32), (N,))
    sink_BNT1 = jnp.broadcast_to(sinks_N[None, :, None, None], (B, N, T, 1))
  logits_BNTS = jnp.where(visible_BNTS, logits_BNTS, -jnp.inf)
  all_BNTS1 = jnp.concatenate([logits_BNTS, sink_BNT1], axis=-1)
  # Rows whose every entry is -inf (no sink, nothing visible) are defined as 0: use a finite max.
  max_BNT1 = jnp.max(all_BNTS1, axis=-1, keepdims=True)
  max_BNT1 = jax.lax.stop_gradient(jnp.where(jnp.isfinite(max_BNT1), max_BNT1, 0.0))
  e_BNTS1 = jnp.exp(all_BNTS1 - max_BNT1)
  denom_BNT1 = jnp.sum(e_BNTS1, axis=-1, keepdims=True)
  probs_BNTS = e_BNTS1[..., :S] / jnp.where(denom_BNT1 == 0, 1.0, denom_BNT1)
  o_BTNH = jnp.einsum("bnts,bsnh->btnh", probs_BNTS, v_BSNH, precision=jax.lax.Precision.HIGHEST)
  return o_BTNH.astype(q_BTNH.dtype)
