"""Memory-efficient ("flash") attention with a sink logit in pure JAX: tiles of query x key blocks.

Forward, per query row, the online softmax starts from the sink instead of an empty row:
    m = s, l = 1, acc = 0            (s = -inf: m = -inf, l = 0, i.e. plain softmax)
    for each key block S_j:  m' = max(m, rowmax S_j);  l = l e^(m - m') + sum e^(S_j - m');
                             acc = acc e^(m - m') + e^(S_j - m') V_j
    O = acc / l,   L = m + log l     (the log-sum-exp *including* the sink; saved for the backward)
Backward (custom_vjp) recomputes P_j = exp(S_j - L) block by block, with D = rowsum(O * dO):
    dV_j = P_j^T dO,  dS_j = P_j * (dO V_j^T - D),  dQ += scale dS_j K_j,  dK_j = scale dS_j^T Q,
    d sink = -sum_rows exp(s - L) D.
Scores exist only as [B, N, block_q, block_k] tiles, never as the full [B, N, T, S] matrix. The
forward scans the query blocks, each running the online softmax over its key blocks; the backward
scans the key blocks, each accumulating dK_j, dV_j over the query blocks that see it (dQ is a carry
updated block by block). Causal: a query block visits only the key blocks at or left of the diagonal
(a loop with a per-block trip count), so about half of the tiles are never computed.
The helpers `_tile`, `_blocks`, `_block_valid` (key blocks only, all queries at once) serve
`ops.blockwise_alternatives`.
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


def _pad_to(x, axis, n):
  """x zero- (False-) padded along `axis` to length n."""
  pad = n - x.shape[axis]
  if pad <= 0:
    return x
  widths = [(0, 0)] * x.ndim
  widths[axis] = (0, pad)
  return jnp.pad(x, widths)


class _Tiling:
  """Query blocks x key blocks of one call, the triangular visiting order of causal attention and
  the score tiles.

  Layouts (blocked once, outside the loops, so every tile is a leading-axis index):
    q_blocks [nq, B, K, G * bq, H]   (query head n = k * G + g; rows g-major within a block)
    k_blocks, v_blocks [nk, B, K, bk, H]
  Causal (top-left aligned, key j visible to query i iff j <= i): query block i visits only key
  blocks 0 .. kv_count(i) - 1 (those holding a key <= its last row), key block j only query blocks
  q_start(j) .. nq - 1; the fully masked tiles above the diagonal are never computed.
  """

  def __init__(self, q, k, mask, causal, scale, bq, bk):
    B, T, N, H = q.shape
    S, K = k.shape[1], k.shape[2]
    self.B, self.T, self.S, self.K, self.G, self.H = B, T, S, K, N // K, H
    self.bq, self.bk, self.causal, self.scale = bq, bk, causal, scale
    self.nq, self.nk = -(-T // bq), -(-S // bk)
    mask5 = None if mask is None else _mask_5d(mask, self.K, self.G)
    if mask5 is not None:  # padded rows / keys are invalid (False)
      if mask5.shape[3] != 1:
        mask5 = _pad_to(mask5, 3, self.nq * bq)
      if mask5.shape[4] != 1:
        mask5 = _pad_to(mask5, 4, self.nk * bk)
    self.mask5 = mask5

  def block_q(self, x):
    """[B, T, N, X] -> [nq, B, K, G * bq, X] (padded rows are 0)."""
    B, K, G, bq, nq = self.B, self.K, self.G, self.bq, self.nq
    x = _pad_to(x, 1, nq * bq).reshape(B, nq, bq, K, G, x.shape[-1])
    return x.transpose(1, 0, 3, 4, 2, 5).reshape(nq, B, K, G * bq, x.shape[-1])

  def unblock_q(self, x):
    """[nq, B, K, G * bq, X] -> [B, T, N, X]."""
    B, K, G, bq, nq = self.B, self.K, self.G, self.bq, self.nq
    x = x.reshape(nq, B, K, G, bq, x.shape[-1]).transpose(1, 0, 4, 2, 3, 5)
    return x.reshape(B, nq * bq, K * G, x.shape[-1])[:, :self.T]

  def block_k(self, x):
    """[B, S, K, X] -> [nk, B, K, bk, X] (padded keys are 0)."""
    B, K, bk, nk = self.B, self.K, self.bk, self.nk
    x = _pad_to(x, 1, nk * bk).reshape(B, nk, bk, K, x.shape[-1])
    return x.transpose(1, 0, 3, 2, 4)

  def unblock_k(self, x):
    """[nk, B, K, bk, X] -> [B, S, K, X]."""
    x = x.transpose(1, 0, 3, 2, 4)
    return x.reshape(self.B, self.nk * self.bk, self.K, x.shape[-1])[:, :self.S]

  def kv_count(self, i):
    """Number of key blocks query block i visits (all of them unless causal)."""
    if not self.causal:
      return self.nk
    last_row = jnp.minimum((i + 1) * self.bq, self.T) - 1
    return jnp.minimum(self.nk, last_row // self.bk + 1)

  def q_start(self, j):
    """First query block that key block j is visited by (0 unless causal)."""
    return (j * self.bk) // self.bq if self.causal else 0

  def scores(self, q_blk, k_blk, i, j):
    """Scaled scores [B, K, G * bq, bk] (float32) of one tile and their validity (broadcastable), or
    None when every entry is valid."""
    s = jnp.einsum("bkqh,bksh->bkqs", q_blk, k_blk, preferred_element_type=jnp.float32) * self.scale
    bq, bk, G = self.bq, self.bk, self.G
    valid = None
    if self.S % bk:
      valid = (j * bk + jnp.arange(bk) < self.S)[None, :]
    if self.causal:
      qpos = i * bq + jnp.arange(bq)
      c = (j * bk + jnp.arange(bk))[None, :] <= qpos[:, None]  # [bq, bk]
      valid = c if valid is None else jnp.logical_and(valid, c)
    if self.mask5 is not None:
      m = self.mask5
      if m.shape[3] != 1:
        m = lax.dynamic_slice_in_dim(m, i * bq, bq, 3)
      if m.shape[4] != 1:
        m = lax.dynamic_slice_in_dim(m, j * bk, bk, 4)
      valid = m if valid is None else jnp.logical_and(valid, m)  # [b, k, g, bq|1, bk|1]
    if valid is None:
      return s, None
    if valid.ndim == 2:  # [bq|1, bk]: the same for every head, rows repeat per group member g
      return s, jnp.tile(jnp.broadcast_to(valid, (bq, bk)), (G, 1))
    valid = jnp.broadcast_to(valid, valid.shape[:2] + (G, bq, bk))
    return s, valid.reshape(valid.shape[:2] + (G * bq, bk))


def _forward(q, k, v, sinks_N, mask, causal, scale, bq, bk):
  """Returns (out [B, T, N, Hv] in q's dtype, lse [nq, B, K, G * bq] float32, tiles visited)."""
  tl = _Tiling(q, k, mask, causal, scale, bq, bk)
  B, K, G = tl.B, tl.K, tl.G
  Hv = v.shape[-1]
  q_blocks, k_blocks, v_blocks = tl.block_q(q), tl.block_k(k), tl.block_k(v)
  sink = jnp.repeat(sinks_N.reshape(K, G), bq, axis=1)  # [K, G * bq]
  vz = _vary_like(q, k, v, mask, sinks_N)  # the carries vary like the inputs (shard_map)
  m0 = jnp.broadcast_to(sink, (B, K, G * bq)) + vz
  l0 = jnp.broadcast_to(jnp.where(jnp.isfinite(sink), 1.0, 0.0), (B, K, G * bq)) + vz
  acc0 = jnp.zeros((B, K, G * bq, Hv), jnp.float32) + vz

  def q_step(tiles, x):
    i, q_blk = x

    def kv_step(j, carry):
      m, l, acc, n = carry  # n counts the tiles computed (a test checks the causal triangle)
      v_blk = v_blocks[j]
      s, valid = tl.scores(q_blk, k_blocks[j], i, j)
      if valid is not None:
        s = jnp.where(valid, s, -jnp.inf)
      m_new = jnp.maximum(m, jnp.max(s, axis=-1))
      m_safe = jnp.where(jnp.isfinite(m_new), m_new, 0.0)
      corr = jnp.exp(m - m_safe)
      p = jnp.exp(s - m_safe[..., None])
      l = l * corr + jnp.sum(p, axis=-1)
      pv = jnp.einsum("bkqs,bksh->bkqh", p.astype(v_blk.dtype), v_blk,
                      preferred_element_type=jnp.float32)
      return m_new, l, acc * corr[..., None] + pv, n + 1

    m, l, acc, tiles = lax.fori_loop(0, tl.kv_count(i), kv_step, (m0, l0, acc0, tiles))
    m_safe = jnp.where(jnp.isfinite(m), m, 0.0)
    out = (acc / jnp.where(l == 0, 1.0, l)[..., None]).astype(q.dtype)
    # l == 0 only for a fully masked row without sink; an lse of 0 makes exp(-inf - 0) = 0 there.
    lse = jnp.where(l > 0, m_safe + jnp.log(jnp.where(l > 0, l, 1.0)), 0.0)
    return tiles, (out, lse)

  tiles, (out, lse) = lax.scan(q_step, jnp.int32(0), (jnp.arange(tl.nq), q_blocks))
  return tl.unblock_q(out), lse, tiles


def _backward(q, k, v, sinks_N, mask, out, lse, d_out, causal, scale, bq, bk):
  """Gradients (dq, dk, dv, dsinks) of <out, d_out> and the number of tiles visited.

  Outer scan over key blocks j (dk_j, dv_j accumulate in the inner loop), inner loop over the query
  blocks that see block j; dq [nq, B, K, G * bq, H] float32 is a carry updated one block at a time.
  """
  tl = _Tiling(q, k, mask, causal, scale, bq, bk)
  B, K, G, N, H = tl.B, tl.K, tl.G, tl.K * tl.G, tl.H
  Hv = v.shape[-1]
  f32 = lambda x: x.astype(jnp.float32)
  q_blocks, do_blocks = tl.block_q(f32(q)), tl.block_q(d_out)
  k_blocks, v_blocks = tl.block_k(k), tl.block_k(v)
  # D_i = sum_d O_id dO_id, per row, blocked like lse: [nq, B, K, G * bq]; padded rows are 0.
  delta = tl.block_q(jnp.einsum("btnh,btnh->btn", f32(out), f32(d_out))[..., None])[..., 0]
  vz = _vary_like(q, k, v, mask, d_out, lse)
  dq0 = jnp.zeros((tl.nq, B, K, G * bq, H), jnp.float32) + vz

  def kv_step(carry, x):
    dq, tiles = carry
    j, k_blk, v_blk = x
    k32 = f32(k_blk)

    def q_step(i, carry):
      dq, dk, dv, n = carry
      q_blk, do_blk = q_blocks[i], do_blocks[i]
      s, valid = tl.scores(q_blk, k_blk, i, j)
      p = jnp.exp(s - lse[i][..., None])
      if valid is not None:
        p = jnp.where(valid, p, 0.0)
      dv = dv + jnp.einsum("bkqs,bkqh->bksh", p, f32(do_blk))
      dp = jnp.einsum("bkqh,bksh->bkqs", do_blk, v_blk, preferred_element_type=jnp.float32)
      ds = p * (dp - delta[i][..., None]) * scale
      dq = lax.dynamic_update_index_in_dim(
          dq, dq[i] + jnp.einsum("bkqs,bksh->bkqh", ds, k32), i, 0)
      dk = dk + jnp.einsum("bkqs,bkqh->bksh", ds, q_blk)
      return dq, dk, dv, n + 1

    dk0 = jnp.zeros((B, K, bk, H), jnp.float32) + vz
    dv0 = jnp.zeros((B, K, bk, Hv), jnp.float32) + vz
    dq, dk, dv, tiles = lax.fori_loop(tl.q_start(j), tl.nq, q_step, (dq, dk0, dv0, tiles))
    return (dq, tiles), (dk, dv)

  (dq, tiles), (dk, dv) = lax.scan(kv_step, (dq0, jnp.int32(0)),
                                   (jnp.arange(tl.nk), k_blocks, v_blocks))
  sink = jnp.repeat(sinks_N.reshape(K, G), bq, axis=1)  # [K, G * bq]
  p_sink = jnp.exp(sink - lse)  # exp(-inf) = 0 for a softmax row
  dsinks = -jnp.sum((p_sink * delta).reshape(tl.nq, B, K, G, bq), axis=(0, 1, 4)).reshape(N)
  grads = (tl.unblock_q(dq).astype(q.dtype), tl.unblock_k(dk).astype(k.dtype),
           tl.unblock_k(dv).astype(v.dtype), dsinks.astype(sinks_N.dtype))
  return grads, tiles


@functools.partial(jax.custom_vjp, nondiff_argnums=(5, 6, 7, 8))
def _attention(q, k, v, sinks_N, mask, causal, scale, bq, bk):
  return _forward(q, k, v, sinks_N, mask, causal, scale, bq, bk)[0]


def _attention_fwd(q, k, v, sinks_N, mask, causal, scale, bq, bk):
  out, lse, _ = _forward(q, k, v, sinks_N, mask, causal, scale, bq, bk)
  return out, (q, k, v, sinks_N, mask, out, lse)


def _attention_bwd(causal, scale, bq, bk, res, d_out):
  q, k, v, sinks_N, mask, out, lse = res
  (dq, dk, dv, dsinks), _ = _backward(q, k, v, sinks_N, mask, out, lse, d_out, causal, scale, bq, bk)
  return (_match_vma(dq, q), _match_vma(dk, k), _match_vma(dv, v), _match_vma(dsinks, sinks_N),
          None)


_attention.defvjp(_attention_fwd, _attention_bwd)


# Default tile of the CPU path (measured with benchmarks/bench_blockwise_vs_tokamax.py, see
# BENCHMARKS.md): small enough that a [B, K, G * block_q, block_k] tile stays in cache and the
# skipped causal triangle is fine-grained, large enough that the loop overhead stays small.
BLOCK_Q = 256
BLOCK_K = 256


def blockwise_attention(query, key, value, sinks, *, mask=None, causal=False, scale=None,
                        block_k=None, block_q=None):
  """Flash attention with per-head sink logits in pure JAX (see module docstring).

  Args:
    query: [B, T, N, H]; key, value: [B, S, K, H], K divides N.
    sinks: [N] float sink logits (-inf: softmax, 0: softmax1); differentiable.
    mask: optional boolean [B|1, N|1, T|1, S|1] (True = attend).
    causal: key j visible to query i iff j <= i (top-left aligned); the tiles above the diagonal
      are skipped, not computed.
    scale: logit scale, default 1 / sqrt(H).
    block_k: keys per block (default min(BLOCK_K, S)); S need not be a multiple (padded, masked).
    block_q: queries per block (default min(BLOCK_Q, T)); T need not be a multiple.
  Returns [B, T, N, H] in query's dtype. Memory O(B N block_q block_k) for the scores instead of
  O(B N T S).
  """
  T, S = query.shape[1], key.shape[1]
  if query.shape[0] * T * S == 0:
    # No (query, key) pair: an empty result, or rows over 0 keys, which (like fully masked rows)
    # have no probability mass and give 0. Independent of the inputs, so every gradient is 0.
    return jnp.zeros(query.shape[:3] + value.shape[-1:], query.dtype)
  bk = int(block_k or min(BLOCK_K, S))
  if bk <= 0:
    raise ValueError(f"block_k must be positive, got {block_k}")
  bq = int(block_q or max(1, min(BLOCK_Q, T)))  # T = 0: an empty output, as before
  if bq <= 0:
    raise ValueError(f"block_q must be positive, got {block_q}")
  scale = float(scale if scale is not None else query.shape[-1] ** -0.5)
  sinks = jnp.asarray(sinks, jnp.float32)
  if mask is not None:
    mask = jnp.asarray(mask, bool)
    mask = mask.reshape((1,) * (4 - mask.ndim) + mask.shape)
  return _attention(query, key, value, sinks, mask, bool(causal), scale, bq, bk)
