"""Attention outliers (sinks) of attention maps: received mass per key, sinks, value-norm ratio.

attention   of one layer's map p [B, N, T, S]: received mass of key j in head n = mean over valid
            queries of p[n, i, j] (masked pairs count 0); key j is a sink of head n iff its
            received mass > 0.3 (the Gu et al. threshold of `metrics.sink_rate`, generalised
            from the first token to any key). Normalizers whose rows do not sum to 1 (sigmoid,
            softpick, softmax1) are read as they are: the mass is absolute, and the mean row sum
            (how much attention a head hands out; 1 for softmax) is reported beside it. Sink
            value ratio: mean ||v_j|| of a head's sink keys / that of its other keys (the paper:
            attention outliers carry near-zero values). Under a causal mask key 0 is seen by
            every query, so even a uniform causal head gives it H_T / T (0.21 at T = 16, 0.024 at
            T = 256): the threshold is meant for sequences of tens of tokens or more.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from outeffhop_jax.analysis.outliers import collect

SINK_THRESHOLD = collect.SINK_THRESHOLD  # 0.3, Gu et al. (ICLR 2025)


def attention_sums(p_BNTS, q_BT, mask=None):
  """Weighted sums over queries: received [N, S], row sums [N] and the query weight total."""
  p = jnp.asarray(p_BNTS, jnp.float32)
  if mask is not None:
    p = jnp.where(jnp.broadcast_to(jnp.asarray(mask, bool), p.shape), p, 0.0)
  q = jnp.asarray(q_BT, jnp.float32)[:, None, :, None]  # [B, 1, T, 1]
  return jnp.sum(p * q, axis=(0, 2)), jnp.sum(jnp.sum(p, -1, keepdims=True) * q, axis=(0, 2, 3)), \
      jnp.sum(q_BT)


def attention_received(p_BNTS, *, mask=None, valid_T=None):
  """Mean attention mass received per key and handed out per query, over valid queries.

  p_BNTS: one layer's attention map. mask: boolean, broadcastable to [B, N, T, S] (True = attend);
  masked pairs count 0 whatever p holds there. valid_T: boolean [B, T] of real queries (padding
  queries are left out of the means). Returns (received [N, S], mean row sum [N]) as float32:
  received[n, j] = sum_{b, i valid} p[b, n, i, j] / #valid queries.
  """
  B, _, T, _ = p_BNTS.shape
  q = jnp.ones((B, T), jnp.float32) if valid_T is None else jnp.asarray(valid_T, jnp.float32)
  recv, rows, nq = attention_sums(p_BNTS, q, mask)
  nq = jnp.maximum(nq, 1.0)
  return recv / nq, rows / nq


def attention_summary(received_NS, row_sum_N, *, threshold: float = SINK_THRESHOLD) -> dict:
  """One layer's received masses -> sinks and summary numbers (NumPy float64).

  sinks: (head, key, mass) with mass > threshold; sink_head_frac: fraction of heads with a sink;
  first_token_mass [N]: received mass of key 0; max_received: max over heads and keys;
  mean_row_sum [N].
  """
  r = np.asarray(received_NS, np.float64)
  is_sink = r > threshold
  return {"sink_head_frac": float(np.mean(is_sink.any(axis=1))),
          "sinks": [[int(n), int(j), float(r[n, j])] for n, j in zip(*np.nonzero(is_sink))],
          "first_token_mass": r[:, 0].tolist(), "max_received": float(r.max()),
          "mean_row_sum": np.asarray(row_sum_N, np.float64).tolist()}


def attention_outliers(p_BNTS, *, mask=None, valid_T=None,
                       threshold: float = SINK_THRESHOLD) -> dict:
  """`attention_received` then `attention_summary`, plus "received" [N, S] (a list)."""
  recv, rows = attention_received(p_BNTS, mask=mask, valid_T=valid_T)
  return {**attention_summary(recv, rows, threshold=threshold),
          "received": np.asarray(recv, np.float64).tolist()}


def sink_value_ratio(value_norm_KS, received_NS, *, threshold: float = SINK_THRESHOLD):
  """Per head: mean ||v|| of its sink keys / mean ||v|| of its other keys ([N], NaN where a head
  has no sink or no other key). value_norm_KS: mean value-vector norm per kv head and key position;
  query head n reads kv head n // (N / K) (grouped-query attention)."""
  v = np.asarray(value_norm_KS, np.float64)
  r = np.asarray(received_NS, np.float64)
  N, K = r.shape[0], v.shape[0]
  out = np.full((N,), np.nan)
  for n in range(N):
    sink = r[n] > threshold
    if sink.any() and not sink.all():
      vn = v[n // max(N // K, 1)]
      other = vn[~sink].mean()
      out[n] = vn[sink].mean() / other if other > 0 else np.nan
  return out
