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
Gradients: a hand-written flash-style backward (custom_vjp). The forward saves only the output and
one normaliser per row R (log denominator, or the denominator for stablemax); the backward scans the
key blocks again, recomputing each block's scores, with D = rowsum(O * dO) and dp = dO V_j^T:
  dS = (f'(S_j) dp - a'(S_j) D) / den   (f the weight, a the denominator term of the normalizer)
  dV_j = (f(S_j) / den)^T dO,  dQ += scale dS K_j,  dK_j = scale dS^T Q.
Memory O(B N T (H + block_k)): neither the [B, N, T, S] scores nor per-step carries are stored.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from outeffhop_jax.ops import alternatives
from outeffhop_jax.ops import blockwise as _bw

# The helpers of ops.blockwise (_tile, _blocks, _block_valid, _mask_5d, _vary_like, _match_vma) are
# shared on purpose.
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

  n0 = jnp.zeros((B, K, G, T), jnp.float32) + _bw._vary_like(mask)
  n, _ = lax.scan(step, n0, (jnp.arange(nb), blocks))
  return n


def _weights(score, s, valid, bias):
  """Unnormalised block weights of sigmoid / stablemax; 0 where invalid."""
  s = jnp.where(valid, s, 0.0)
  w = jax.nn.sigmoid(s + bias) if score == "sigmoid" else alternatives.stablemax_score(s)
  return jnp.where(valid, w, 0.0)


def _row_constant(score, bias, mask, causal, B, K, G, T, S, bk):
  """The per-row constant: sigmoid's bias (-log n or fixed), softplus's LSSA scale log n; else 0."""
  if (score == "sigmoid" and bias is None) or score == "softplus":
    n = jnp.maximum(_row_counts(mask, causal, B, K, G, T, S, bk), 1.0)[..., None]
    return -jnp.log(n) if score == "sigmoid" else jnp.log(n)
  return jnp.float32(bias if score == "sigmoid" else 0.0)


def _forward(q, k, v, score, bias, eps, mask, causal, scale, bk):
  """Returns (out [B, T, N, H] in q's dtype, (row, R)): row the per-row constant, R [B, K, G, T] the
  row's normaliser for the backward (log of the denominator for softplus / softpick, the
  denominator for stablemax, unused for sigmoid)."""
  B, T, N, _ = q.shape
  S, K, Hv = k.shape[1], k.shape[2], v.shape[-1]
  G = N // K
  _, xs, scores = _bw._tile(q, k, v, mask, causal, scale, bk)
  row = _row_constant(score, bias, mask, causal, B, K, G, T, S, bk)

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
    m_new = jnp.maximum(m, jnp.max(jnp.where(valid, s, -jnp.inf), axis=-1))
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

  vz = _bw._vary_like(q, k, v, mask)  # the carries vary like the inputs (shard_map)
  zeros = jnp.zeros((B, K, G, T), jnp.float32) + vz
  m0 = jnp.full((B, K, G, T), -jnp.inf, jnp.float32) + vz if score == "softplus" else zeros
  init = (m0, zeros, jnp.zeros((B, K, G, T, Hv), jnp.float32) + vz)
  (m, l, acc), _ = lax.scan(step, init, xs)
  if score == "sigmoid":
    out, norm = acc, zeros
  else:
    den = l + eps * jnp.exp(-m) if score == "softpick" else l
    out = acc / jnp.where(den > 0, den, 1.0)[..., None]  # 0 for a fully masked row
    if score == "stablemax":
      norm = jnp.where(den > 0, den, 1.0)
    else:  # log of the true denominator: m + log(den); 0 for a fully masked row
      m_safe = jnp.where(jnp.isfinite(m), m, 0.0)
      norm = jnp.where(den > 0, m_safe + jnp.log(jnp.where(den > 0, den, 1.0)), 0.0)
  out = jnp.moveaxis(out, 3, 1).reshape(B, T, N, Hv).astype(q.dtype)
  return out, (row, norm)


def _block_grads(score, s, valid, row, norm, dp, delta):
  """(P, dS) of one block: P = dO_i/dacc-weights w_ij / den_i, dS = dL/ds_ij, both [B, K, G, T, bk].

  With O_i = sum_j f(s_ij) v_j / den_i, den_i = sum_j a(s_ij) (+ eps), dp_ij = <dO_i, v_j> and
  D_i = <dO_i, O_i>:  dS_ij = (f'(s_ij) dp_ij - a'(s_ij) D_i) / den_i, each in its stable form.
  """
  s = jnp.where(valid, s, 0.0)
  norm = norm[..., None]
  if score == "sigmoid":  # den = 1, a = 0
    p = jax.nn.sigmoid(s + row)
    ds = p * (1.0 - p) * dp
  elif score == "stablemax":  # f = a = s(x); s' = 1 (x >= 0), 1 / (1 - x)^2 (x < 0)
    p = alternatives.stablemax_score(s) / norm
    neg = jnp.minimum(s, 0.0)
    ds = jnp.where(s >= 0, 1.0, 1.0 / jnp.square(1.0 - neg)) / norm * (dp - delta)
  elif score == "softplus":  # f = a = softplus(z), z = r s (r = log n > 0; else z = 0)
    z = row * jnp.where(row > 0, s, 0.0)
    p = jnp.exp(alternatives.log_softplus(z) - norm)
    # f' / den = r sigmoid(z) / den = r exp(log_sigmoid(z) - log den): no overflow where den is tiny
    ds = jnp.where(row > 0, row, 0.0) * jnp.exp(jax.nn.log_sigmoid(z) - norm) * (dp - delta)
  else:  # softpick: f = relu(e^s - 1), a = |e^s - 1|; f' = e^s [s > 0], a' = sign(s) e^s
    e = jnp.exp(s - norm)
    p = jnp.where(s > 0, e - jnp.exp(-norm), 0.0)
    ds = e * (jnp.where(s > 0, dp, 0.0) - jnp.sign(s) * delta)
  return jnp.where(valid, p, 0.0), jnp.where(valid, ds, 0.0)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5, 7, 8, 9))
def _attention(q, k, v, score, bias, eps, mask, causal, scale, bk):
  return _forward(q, k, v, score, bias, eps, mask, causal, scale, bk)[0]


def _attention_fwd(q, k, v, score, bias, eps, mask, causal, scale, bk):
  out, (row, norm) = _forward(q, k, v, score, bias, eps, mask, causal, scale, bk)
  return out, (q, k, v, mask, out, row, norm)


def _attention_bwd(score, bias, eps, causal, scale, bk, res, d_out):
  """Flash-style backward: each key block's scores are recomputed from q and k (never stored)."""
  del bias, eps  # their effect is in the saved row constant and normaliser
  q, k, v, mask, out, row, norm = res
  B, T, N, H = q.shape
  S, K = k.shape[1], k.shape[2]
  G = N // K
  nb = -(-S // bk)
  q_BTKGH, xs, scores = _bw._tile(q, k, v, mask, causal, scale, bk)
  do_BTKGH = d_out.reshape(B, T, K, G, -1).astype(jnp.float32)
  delta = jnp.einsum("btkgh,btkgh->bkgt", out.reshape(B, T, K, G, -1).astype(jnp.float32),
                     do_BTKGH)[..., None]

  def step(dq, x):
    _, k_blk, v_blk, _ = x
    s, valid = scores(x)
    dp = jnp.einsum("btkgh,bskh->bkgts", do_BTKGH, v_blk, preferred_element_type=jnp.float32)
    p, ds = _block_grads(score, s, valid, row, norm, dp, delta)
    ds = ds * scale
    dv_blk = jnp.einsum("bkgts,btkgh->bskh", p, do_BTKGH)
    dq = dq + jnp.einsum("bkgts,bskh->btkgh", ds, k_blk.astype(jnp.float32))
    dk_blk = jnp.einsum("bkgts,btkgh->bskh", ds, q_BTKGH.astype(jnp.float32))
    return dq, (dk_blk, dv_blk)

  dq0 = jnp.zeros((B, T, K, G, H), jnp.float32) + _bw._vary_like(q, k, v, mask, d_out, norm)
  dq, (dk_blocks, dv_blocks) = lax.scan(step, dq0, xs)

  def unblock(x_blocks):  # [nb, B, bk, K, H] -> [B, S, K, H]
    return jnp.moveaxis(x_blocks, 0, 1).reshape(B, nb * bk, K, -1)[:, :S]

  return (_bw._match_vma(dq.reshape(B, T, N, H).astype(q.dtype), q),
          _bw._match_vma(unblock(dk_blocks).astype(k.dtype), k),
          _bw._match_vma(unblock(dv_blocks).astype(v.dtype), v), None)


_attention.defvjp(_attention_fwd, _attention_bwd)


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
  bias = None if normalizer.bias is None else float(normalizer.bias)
  return _attention(query, key, value, normalizer.score, bias, eps, mask, bool(causal), scale, bk)
