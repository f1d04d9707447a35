"""Memory-efficient ("flash") attention with a sink logit in pure JAX: `lax.scan` over key blocks.

Forward, per query row, the online softmax starts from the sink instead of an empty row:
    m = s, l = 1, acc = 0            (s = -inf: m = -inf, l = 0, i.e. plain softmax)
    for each key block S_j:  m' = max(m, rowmax S_j);  l = l e^(m - m') + sum e^(S_j - m');
                             acc = acc e^(m - m') + e^(S_j - m') V_j
    O = acc / l,   L = m + log l     (the log-sum-exp *including* the sink; saved for the backward)
Backward (custom_vjp) recomputes P_j = exp(S_j - L) block by block, with D = rowsum(O * dO):
    dV_j = P_j^T dO,  dS_j = P_j * (dO V_j^T - D),  dQ += scale dS_j K_j,  dK_j = scale dS_j^T Q,
    d sink = -sum_rows exp(s - L) D.
Scores exist only as [B, N, T, block_k] tiles, never as the full [B, N, T, S] matrix.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from outeffhop_jax.ops import _checks


def _blocks(x, axis, nb, bk):
  """Splits `axis` of x (padded to nb * bk) into blocks, block index moved to the front."""
  pad = nb * bk - x.shape[axis]
  if pad:
    widths = [(0, 0)] * x.ndim
    widths[axis] = (0, pad)
    x = jnp.pad(x, widths)
  x = x.reshape(x.shape[:axis] + (nb, bk) + x.shape[axis + 1:])
  return jnp.moveaxis(x, axis, 0)


def _block_valid(mask_blk, j, T, S, bk, causal):
  """Boolean validity of one key block, broadcastable to [B, K, G, T, bk]."""
  kpos = j * bk + jnp.arange(bk)
  valid = (kpos < S)[None, :]
  if causal:
    valid = jnp.logical_and(valid, kpos[None, :] <= jnp.arange(T)[:, None])
  if mask_blk is not None:
    valid = jnp.logical_and(valid, mask_blk)
  return valid


def _vary_like(*arrays):
  """float32 scalar 0 varying over the union of the arrays' varying mesh axes (None skipped).

  Inside `jax.shard_map` (check_vma=True) a scan carry must vary over the same mesh axes as its
  body's output, which mixes q, k, v, the mask and the sinks; a carry built from constants varies
  over none. Adding this zero to the initial carries fixes that; outside shard_map it is a plain 0.
  """
  return _checks.vary_like(jnp.zeros((), jnp.float32), *arrays)


_vma = _checks.varying_axes


def _match_vma(ct, primal):
  """A cotangent typed like its primal inside shard_map: summed (psum) over the mesh axes it varies
  over and the primal does not (a replicated input, e.g. the sinks, used by varying rows), made
  varying over the primal's axes it lacks. A no-op outside shard_map."""
  extra, missing = _vma(ct) - _vma(primal), _vma(primal) - _vma(ct)
  if extra:
    ct = lax.psum(ct, tuple(sorted(extra)))
  if missing:
    ct = lax.pcast(ct, tuple(sorted(missing)), to="varying")
  return ct


def _mask_5d(mask, K, G):
  """[B|1, N|1, T|1, S|1] -> [B|1, K|1, G|1, T|1, S|1] so query head n = k * G + g."""
  b, n, t, s = mask.shape
  return mask.reshape(b, K, G, t, s) if n != 1 else mask.reshape(b, 1, 1, t, s)


def _tile(q, k, v, mask, causal, scale, bk):
  """Splits keys, values and the mask into blocks; returns (q_BTKGH, scan inputs, block scorer).

  The scorer maps one scan input to its scaled scores [B, K, G, T, bk] (float32) and their validity.
  """
  B, T, N, H = q.shape
  S, K = k.shape[1], k.shape[2]
  G = N // K
  nb = -(-S // bk)
  q_BTKGH = q.reshape(B, T, K, G, H)
  mask5 = None if mask is None else _mask_5d(mask, K, G)
  split_mask = mask5 is not None and mask5.shape[-1] != 1
  # A mask constant over keys (or none) is not split into blocks.
  mask_blocks = _blocks(mask5, 4, nb, bk) if split_mask else None
  xs = (jnp.arange(nb), _blocks(k, 1, nb, bk), _blocks(v, 1, nb, bk), mask_blocks)

  def scores(x):
    j, k_blk, _, mask_blk = x
    s = jnp.einsum("btkgh,bskh->bkgts", q_BTKGH, k_blk, preferred_element_type=jnp.float32) * scale
    valid = _block_valid(mask_blk if split_mask else mask5, j, T, S, bk, causal)
    return s, valid

  return q_BTKGH, xs, scores


def _forward(q, k, v, sinks_N, mask, causal, scale, bk):
  B, T, N, _ = q.shape
  K = k.shape[2]
  G = N // K
  _, xs, scores = _tile(q, k, v, mask, causal, scale, bk)
  sink_KG1 = sinks_N.reshape(K, G, 1)

  vz = _vary_like(q, k, v, mask, sinks_N)  # the carries vary like the inputs (shard_map)
  m0 = jnp.broadcast_to(sink_KG1, (B, K, G, T)) + vz
  l0 = jnp.broadcast_to(jnp.where(jnp.isfinite(sink_KG1), 1.0, 0.0), (B, K, G, T)) + vz
  acc0 = jnp.zeros((B, K, G, T, v.shape[-1]), jnp.float32) + vz

  def step(carry, x):
    m, l, acc = carry
    v_blk = x[2]
    s, valid = scores(x)
    s = jnp.where(valid, s, -jnp.inf)
    m_new = jnp.maximum(m, jnp.max(s, axis=-1))
    m_safe = jnp.where(jnp.isfinite(m_new), m_new, 0.0)
    corr = jnp.exp(m - m_safe)
    p = jnp.exp(s - m_safe[..., None])
    l = l * corr + jnp.sum(p, axis=-1)
    pv = jnp.einsum("bkgts,bskh->bkgth", p.astype(v_blk.dtype), v_blk,
                    preferred_element_type=jnp.float32)
    acc = acc * corr[..., None] + pv
    return (m_new, l, acc), None

  (m, l, acc), _ = lax.scan(step, (m0, l0, acc0), xs)
  m_safe = jnp.where(jnp.isfinite(m), m, 0.0)
  out = acc / jnp.where(l == 0, 1.0, l)[..., None]
  # l == 0 only for a fully masked row without sink; an lse of 0 makes exp(-inf - 0) = 0 there.
  lse = jnp.where(l > 0, m_safe + jnp.log(jnp.where(l > 0, l, 1.0)), 0.0)
  out_BTNH = jnp.moveaxis(out, 3, 1).reshape(B, T, N, v.shape[-1]).astype(q.dtype)
  return out_BTNH, lse


@functools.partial(jax.custom_vjp, nondiff_argnums=(5, 6, 7))
def _attention(q, k, v, sinks_N, mask, causal, scale, bk):
  return _forward(q, k, v, sinks_N, mask, causal, scale, bk)[0]


def _attention_fwd(q, k, v, sinks_N, mask, causal, scale, bk):
  out, lse = _forward(q, k, v, sinks_N, mask, causal, scale, bk)
  return out, (q, k, v, sinks_N, mask, out, lse)


def _attention_bwd(causal, scale, bk, res, d_out):
  q, k, v, sinks_N, mask, out, lse = res
  B, T, N, H = q.shape
  S, K = k.shape[1], k.shape[2]
  G = N // K
  nb = -(-S // bk)
  q_BTKGH, xs, scores = _tile(q, k, v, mask, causal, scale, bk)
  do_BTKGH = d_out.reshape(B, T, K, G, -1)
  # D_i = sum_d O_id dO_id, per row: [B, K, G, T].
  delta = jnp.einsum("btkgh,btkgh->bkgt", out.reshape(B, T, K, G, -1).astype(jnp.float32),
                     do_BTKGH.astype(jnp.float32))

  def step(dq, x):
    _, k_blk, v_blk, _ = x
    s, valid = scores(x)
    p = jnp.where(valid, jnp.exp(jnp.where(valid, s, 0.0) - lse[..., None]), 0.0)
    dv_blk = jnp.einsum("bkgts,btkgh->bskh", p, do_BTKGH.astype(jnp.float32))
    dp = jnp.einsum("btkgh,bskh->bkgts", do_BTKGH, v_blk, preferred_element_type=jnp.float32)
    ds = p * (dp - delta[..., None]) * scale
    dq = dq + jnp.einsum("bkgts,bskh->btkgh", ds, k_blk.astype(jnp.float32))
    dk_blk = jnp.einsum("bkgts,btkgh->bskh", ds, q_BTKGH.astype(jnp.float32))
    return dq, (dk_blk, dv_blk)

  dq0 = jnp.zeros((B, T, K, G, H), jnp.float32) + _vary_like(q, k, v, mask, d_out, lse)
  dq, (dk_blocks, dv_blocks) = lax.scan(step, dq0, xs)

  def unblock(x_blocks):  # [nb, B, bk, K, H] -> [B, S, K, H]
    x = jnp.moveaxis(x_blocks, 0, 1)
    return x.reshape(B, nb * bk, K, -1)[:, :S]

  p_sink = jnp.exp(sinks_N.reshape(K, G, 1) - lse)  # exp(-inf) = 0 for a softmax row
  dsinks = -jnp.sum(p_sink * delta, axis=(0, 3)).reshape(N)
  dmask = None
  return (_match_vma(dq.reshape(B, T, N, H).astype(q.dtype), q),
          _match_vma(unblock(dk_blocks).astype(k.dtype), k),
          _match_vma(unblock(dv_blocks).astype(v.dtype), v),
          _match_vma(dsinks.astype(sinks_N.dtype), sinks_N), dmask)


_attention.defvjp(_attention_fwd, _attention_bwd)


def blockwise_attention(query, key, value, sinks, *, mask=None, causal=False, scale=None,
                        block_k=None):
  """Flash attention with per-head sink logits in pure JAX (see module docstring).

  Args:
    query: [B, T, N, H]; key, value: [B, S, K, H], K divides N.
    sinks: [N] float sink logits (-inf: softmax, 0: softmax1); differentiable.
    mask: optional boolean [B|1, N|1, T|1, S|1] (True = attend).
    causal: key j visible to query i iff j <= i.
    scale: logit scale, default 1 / sqrt(H).
    block_k: keys per block (default min(512, S)); S need not be a multiple (padded, masked).
  Returns [B, T, N, H] in query's dtype. Memory O(B N T block_k) instead of O(B N T S).
  """
  S = key.shape[1]
  bk = int(block_k or min(512, S))
  if bk <= 0:
    raise ValueError(f"block_k must be positive, got {block_k}")
  scale = float(scale if scale is not None else query.shape[-1] ** -0.5)
  sinks = jnp.asarray(sinks, jnp.float32)
  if mask is not None:
    mask = jnp.asarray(mask, bool)
    mask = mask.reshape((1,) * (4 - mask.ndim) + mask.shape)
  return _attention(query, key, value, sinks, mask, bool(causal), scale, bk)
