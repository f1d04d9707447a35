"""Memory-efficient attention for the sigmoid, softplus, stablemax and softpick normalizers.

A `lax.scan` over key blocks, as `ops.blockwise` does for the sink family; per query row, with S_j
the scaled scores of key block j and n the row's number of valid keys:
  sigmoid    O = sum_j sigmoid(S_j + b) V_j,   b = -log n (or the spec's fixed bias); no row sum.
  stablemax  O = sum_j s(S_j) V_j / sum_j rowsum s(S_j),   s(x) = x + 1 (x >= 0), 1 / (1 - x)
  softplus   (LSSA) the online softmax of flash attention over L_j = log softplus(log(n) S_j), which
             is softplus(log(n) S_j) V_j summed and divided by its row sum, exact where softplus
             underflows (as `ops.softplus_attention`): from m = -inf, l = 0, acc = 0,
             m' = max(m, rowmax L_j),  l = l e^(m - m') + rowsum e^(L_j - m'),
             acc = acc e^(m - m') + e^(L_j - m') V_j,   O = acc / l
  softpick   online max rescaling as in flash attention, starting from m = 0, l = 0, acc = 0:
             m' = max(m, rowmax S_j),  d_j = e^(S_j - m') - e^-m',
             l = l e^(m - m') + rowsum |d_j|,  acc = acc e^(m - m') + relu(d_j) V_j,
             O = acc / (l + eps e^-m)
n is counted before the score loop by a pass over the blocks' validity (mask, causality, padding;
no scores), so a causal or padded row uses its own length, exactly as `attention_weights` does.
Gradients are autodiff of the scan with every step under `jax.checkpoint`: the backward recomputes
each block's scores, and the residuals are the per-step carries ([B, N, T, H] each), never the
[B, N, T, S] scores.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from outeffhop_jax.ops import alternatives
from outeffhop_jax.ops import blockwise as _bw

# The tiling helpers of ops.blockwise (_tile, _blocks, _block_valid, _mask_5d) are shared on purpose.
# pylint: disable=protected-access

SCORES = ("sigmoid", "softplus", "stablemax", "softpick")


def _row_counts(mask, causal, B, K, G, T, S, bk):
  """n_BKGT: float32 number of valid keys of each query row (mask, causality, S), block by block."""
  nb = -(-S // bk)
  mask5 = None if mask is None else _bw._mask_5d(mask, K, G)
  split = mask5 is not None and mask5.shape[-1] != 1
  blocks = _bw._blocks(mask5, 4, nb, bk) if split else None

  def step(n, x):
    j, mask_blk = x
    valid = _bw._block_valid(mask_blk if split else mask5, j, T, S, bk, causal)
    return n + jnp.sum(jnp.broadcast_to(valid, (B, K, G, T, bk)), axis=-1, dtype=jnp.float32), None

  n, _ = lax.scan(step, jnp.zeros((B, K, G, T), jnp.float32), (jnp.arange(nb), blocks))
  return n


def _weights(score, s, valid, bias):
  """Unnormalised block weights of sigmoid / stablemax; 0 where invalid."""
  s = jnp.where(valid, s, 0.0)
  w = jax.nn.sigmoid(s + bias) if score == "sigmoid" else alternatives.stablemax_score(s)
  return jnp.where(valid, w, 0.0)


def _forward(q, k, v, score, bias, eps, mask, causal, scale, bk):
  B, T, N, _ = q.shape
  S, K, Hv = k.shape[1], k.shape[2], v.shape[-1]
  G = N // K
  _, xs, scores = _bw._tile(q, k, v, mask, causal, scale, bk)
  row = None
  if (score == "sigmoid" and bias is None) or score == "softplus":
    n = jnp.maximum(_row_counts(mask, causal, B, K, G, T, S, bk), 1.0)[..., None]
    row = -jnp.log(n) if score == "sigmoid" else jnp.log(n)  # the sigmoid bias / the LSSA scale
  elif score == "sigmoid":
    row = jnp.float32(bias)

  def pv(w, v_blk):
    return jnp.einsum("bkgts,bskh->bkgth", w.astype(v_blk.dtype), v_blk,
                      preferred_element_type=jnp.float32)

  def step(carry, x):
    m, l, acc = carry
    v_blk = x[2]
    s, valid = scores(x)
    if score in ("sigmoid", "stablemax"):
      w = _weights(score, s, valid, row)
      return (m, l + jnp.sum(w, axis=-1), acc + pv(w, v_blk)), None
    s = jnp.where(valid, s, 0.0)
    if score == "softplus":
      s = jnp.where(valid, alternatives.log_softplus(row * jnp.where(row > 0, s, 0.0)), -jnp.inf)
    # The output does not depend on m (it cancels), so m carries no gradient.
    m_new = lax.stop_gradient(jnp.maximum(m, jnp.max(jnp.where(valid, s, -jnp.inf), axis=-1)))
    m_safe = jnp.where(jnp.isfinite(m_new), m_new, 0.0)  # softplus rows with no valid key yet
    corr = jnp.exp(m - m_safe)
    if score == "softplus":
      w = jnp.exp(s - m_safe[..., None])  # 0 where invalid (s = -inf)
      l = l * corr + jnp.sum(w, axis=-1)
    else:
      d = jnp.exp(s - m_safe[..., None]) - jnp.exp(-m_safe)[..., None]
      w = jnp.where(jnp.logical_and(valid, s > 0), jax.nn.relu(d), 0.0)
      l = l * corr + jnp.sum(jnp.where(valid, jnp.abs(d), 0.0), axis=-1)
    return (m_new, l, acc * corr[..., None] + pv(w, v_blk)), None

  zeros = jnp.zeros((B, K, G, T), jnp.float32)
  m0 = jnp.full((B, K, G, T), -jnp.inf, jnp.float32) if score == "softplus" else zeros
  init = (m0, zeros, jnp.zeros((B, K, G, T, Hv), jnp.float32))
  (m, l, acc), _ = lax.scan(jax.checkpoint(step), init, xs)
  if score == "sigmoid":
    out = acc
  else:
    den = l + eps * jnp.exp(-m) if score == "softpick" else l
    out = acc / jnp.where(den > 0, den, 1.0)[..., None]  # 0 for a fully masked row
  return jnp.moveaxis(out, 3, 1).reshape(B, T, N, Hv).astype(q.dtype)


def blockwise_alternative_attention(query, key, value, normalizer, *, mask=None, causal=False,
                                    scale=None, block_k=None):
  """Blockwise attention for a normalizer of kind "elementwise" or "l1" (see module docstring).

  Args:
    query: [B, T, N, H]; key, value: [B, S, K, H], K divides N.
    normalizer: an `ops.Normalizer` with `score` in SCORES (sigmoid, softplus, stablemax, softpick).
    mask: optional boolean [B|1, N|1, T|1, S|1] (True = attend).
    causal: key j visible to query i iff j <= i.
    scale: logit scale, default 1 / sqrt(H).
    block_k: keys per block (default min(512, S)); S need not be a multiple (padded, masked).
  Returns [B, T, N, H] in query's dtype. Memory O(B N T block_k) instead of O(B N T S).
  """
  if normalizer.kind not in ("elementwise", "l1") or normalizer.score not in SCORES:
    raise ValueError(f"blockwise_alternative_attention takes sigmoid, softplus, stablemax or "
                     f"softpick, not normalizer {normalizer.spec!r}")
  S = key.shape[1]
  bk = int(block_k or min(512, S))
  if bk <= 0:
    raise ValueError(f"block_k must be positive, got {block_k}")
  scale = float(scale if scale is not None else query.shape[-1] ** -0.5)
  if mask is not None:
    mask = jnp.asarray(mask, bool)
    mask = mask.reshape((1,) * (4 - mask.ndim) + mask.shape)
  eps = 0.0 if normalizer.eps is None else float(normalizer.eps)
  return _forward(query, key, value, normalizer.score, normalizer.bias, eps, mask, bool(causal),
                  scale, bk)
