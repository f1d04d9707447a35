"""Flash attention with a sink logit as Mosaic TPU Pallas kernels (also run in interpret mode on CPU).

Three pallas_calls: forward (O and the log-sum-exp L including the sink), dQ, and dK/dV. Each grid
step works on one (block_q, H) query tile and one (block_k, H) key tile; running max / sum / output
accumulators live in VMEM scratch across the innermost ("arbitrary") grid axis.

Layout: a [B, T, N, H] array is viewed as 3-D tiles of (block, H). When H % 128 == 0 the view is
the free reshape [B, T, N·H] (tile (b, i, n)), so no transpose is paid; otherwise heads are moved
in front, [B, N·T, H] (tile (b, n·T/block + i, 0)), because a 64-wide tile is not lane aligned.
Per-row vectors (L, Δ, segment ids) are stored as rows [..., 1, T] and read as (1, block) tiles.
"""
from __future__ import annotations

import functools

import jax
from jax import lax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu

from outeffhop_jax.kernels import _common
from outeffhop_jax.kernels._common import MASK_VALUE

_NT = (((1,), (1,)), ((), ()))  # a @ b.T
_NN = (((1,), (0,)), ((), ()))  # a @ b


def _tile_view(x_BTNH, block):
  """(x viewed as [B, R, C], index_fn(b, head, seq_block) -> block index of its (block, H) tile)."""
  B, T, N, H = x_BTNH.shape
  if H % 128 == 0:
    return x_BTNH.reshape(B, T, N * H), lambda b, n, i: (b, i, n)
  n_blocks = T // block
  x_BRH = x_BTNH.transpose(0, 2, 1, 3).reshape(B, N * T, H)
  return x_BRH, lambda b, n, i: (b, n * n_blocks + i, 0)


def _from_tile_view(x_BRC, shape_BTNH):
  B, T, N, H = shape_BTNH
  if H % 128 == 0:
    return x_BRC.reshape(B, T, N, H)
  return x_BRC.reshape(B, N, T, H).transpose(0, 2, 1, 3)


def _col_to_row(x_X1):
  """(X, 1) column -> (1, X) row via a lane-replicated 2-D transpose (the form Mosaic lowers)."""
  X = x_X1.shape[0]
  return jnp.transpose(jnp.broadcast_to(x_X1, (X, 128)))[:1, :]


def _block_mask(row0, col0, shape, causal, row_ids, col_ids, rows_are_queries):
  # Mosaic refs hold segment ids as (R, 1) and (1, C) tiles, so they broadcast as they are.
  same = None if row_ids is None else row_ids == col_ids
  return _common.tile_mask(row0, col0, shape, causal, same, rows_are_queries)


def _visible(cfg, b, i, j, nq, nk, ranges):
  """Whether tile pair (q block i, kv block j) of batch b has any visible entry (python True = always)."""
  visible = True
  if cfg.causal:
    visible = _common.causal_block_visible(i, j, cfg.block_q, cfg.block_k)
  if ranges is not None:
    q_lo, q_hi, k_lo, k_hi = ranges
    overlap = _common.ranges_overlap(q_lo[b * nq + i], q_hi[b * nq + i], k_lo[b * nk + j],
                                     k_hi[b * nk + j])
    visible = overlap if visible is True else jnp.logical_and(visible, overlap)
  return visible


def _when(cond, fn):
  if cond is True:
    fn()
  else:
    pl.when(cond)(fn)


def _segment_inputs(cfg, q_segment_ids_BT, kv_segment_ids_BS):
  """Scalar-prefetch block ranges (flat int32) and the id rows [B, 1, T] / [B, 1, S]."""
  if not cfg.has_segments:
    return [], None, None
  q_lo, q_hi = _common.segment_block_ranges(q_segment_ids_BT, cfg.block_q)
  k_lo, k_hi = _common.segment_block_ranges(kv_segment_ids_BS, cfg.block_k)
  prefetch = [r.reshape(-1) for r in (q_lo, q_hi, k_lo, k_hi)]
  return (prefetch, q_segment_ids_BT.astype(jnp.int32)[:, None, :],
          kv_segment_ids_BS.astype(jnp.int32)[:, None, :])


def _pallas(kernel, cfg, grid, n_prefetch, in_specs, out_specs, out_shape, scratch, name):
  return pl.pallas_call(
      kernel,
      grid_spec=pltpu.PrefetchScalarGridSpec(
          num_scalar_prefetch=n_prefetch, grid=grid, in_specs=in_specs, out_specs=out_specs,
          scratch_shapes=scratch),
      out_shape=out_shape,
      compiler_params=pltpu.CompilerParams(
          dimension_semantics=("parallel", "parallel", "parallel", "arbitrary")),
      interpret=cfg.interpret,
      name=name,
  )


# ----------------------------------------------------------------------------------------- forward


def _fwd_kernel(*refs, cfg, nq, nk):
  ranges = refs[:4] if cfg.has_segments else None
  refs = refs[4:] if cfg.has_segments else refs
  (q_ref, k_ref, v_ref, q_ids_ref, kv_ids_ref, sinks_ref, o_ref, lse_ref, m_ref, l_ref,
   acc_ref) = refs
  b, n, i, j = (pl.program_id(a) for a in range(4))

  @pl.when(j == 0)
  def init():
    # The sink is a logit every row sees: start the online softmax from it (m = s, l = e^0 = 1).
    if sinks_ref is not None:
      m_ref[...] = jnp.full(m_ref.shape, sinks_ref[n], jnp.float32)
      l_ref[...] = jnp.ones(l_ref.shape, jnp.float32)
    else:
      m_ref[...] = jnp.full(m_ref.shape, MASK_VALUE, jnp.float32)
      l_ref[...] = jnp.zeros(l_ref.shape, jnp.float32)
    acc_ref[...] = jnp.zeros(acc_ref.shape, jnp.float32)

  def compute():
    s_QK = lax.dot_general(q_ref[...], k_ref[...], _NT,
                           preferred_element_type=jnp.float32) * cfg.scale
    q_ids = None if q_ids_ref is None else jnp.expand_dims(q_ids_ref[0], -1)
    kv_ids = None if kv_ids_ref is None else kv_ids_ref[...]
    mask = _block_mask(i * cfg.block_q, j * cfg.block_k, s_QK.shape, cfg.causal, q_ids, kv_ids,
                       rows_are_queries=True)
    if mask is not None:
      s_QK = jnp.where(mask, s_QK, MASK_VALUE)
    m_prev_Q1 = m_ref[...]
    m_next_Q1 = jnp.maximum(m_prev_Q1, jnp.max(s_QK, axis=-1, keepdims=True))
    p_QK = jnp.exp(s_QK - m_next_Q1)
    if mask is not None:  # a fully masked row of this tile would otherwise add exp(0) = 1
      p_QK = jnp.where(mask, p_QK, 0.0)
    alpha_Q1 = jnp.exp(m_prev_Q1 - m_next_Q1)
    l_ref[...] = alpha_Q1 * l_ref[...] + jnp.sum(p_QK, axis=-1, keepdims=True)
    pv_QH = lax.dot_general(p_QK.astype(v_ref.dtype), v_ref[...], _NN,
                            preferred_element_type=jnp.float32)
    acc_ref[...] = alpha_Q1 * acc_ref[...] + pv_QH
    m_ref[...] = m_next_Q1

  _when(_visible(cfg, b, i, j, nq, nk, ranges), compute)

  @pl.when(j == nk - 1)
  def finish():
    l_Q1 = l_ref[...]
    empty_Q1 = l_Q1 == 0.0  # only without a sink: no visible key, output defined as 0
    l_safe_Q1 = jnp.where(empty_Q1, 1.0, l_Q1)
    o_ref[...] = (acc_ref[...] / l_safe_Q1).astype(o_ref.dtype)
    lse_Q1 = jnp.where(empty_Q1, 0.0, m_ref[...] + jnp.log(l_safe_Q1))
    lse_ref[...] = _col_to_row(lse_Q1)


def forward(q_BTNH, k_BSKH, v_BSKH, sinks_N, q_segment_ids_BT, kv_segment_ids_BS, cfg):
  """Returns (o_BTNH in q.dtype, lse_BNT float32 log-sum-exp including the sink)."""
  B, T, N, H = q_BTNH.shape
  S, K = k_BSKH.shape[1], k_BSKH.shape[2]
  G, bq, bk = N // K, cfg.block_q, cfg.block_k
  nq, nk = T // bq, S // bk
  q_view, q_idx = _tile_view(q_BTNH, bq)
  k_view, k_idx = _tile_view(k_BSKH, bk)
  v_view, _ = _tile_view(v_BSKH, bk)
  prefetch, q_ids, kv_ids = _segment_inputs(cfg, q_segment_ids_BT, kv_segment_ids_BS)

  def kv_block(i, j):
    # Past the diagonal nothing is computed: keep the last useful tile so no new DMA is issued.
    return jnp.minimum(j, (i * bq + bq - 1) // bk) if cfg.causal else j

  in_specs = [
      pl.BlockSpec((None, bq, H), lambda b, n, i, j, *_: q_idx(b, n, i)),
      pl.BlockSpec((None, bk, H), lambda b, n, i, j, *_: k_idx(b, n // G, kv_block(i, j))),
      pl.BlockSpec((None, bk, H), lambda b, n, i, j, *_: k_idx(b, n // G, kv_block(i, j))),
      None if q_ids is None else pl.BlockSpec((None, 1, bq), lambda b, n, i, j, *_: (b, 0, i)),
      None if kv_ids is None else pl.BlockSpec(
          (None, 1, bk), lambda b, n, i, j, *_: (b, 0, kv_block(i, j))),
      None if sinks_N is None else pl.BlockSpec(memory_space=pltpu.SMEM),
  ]
  out_specs = [
      pl.BlockSpec((None, bq, H), lambda b, n, i, j, *_: q_idx(b, n, i)),
      pl.BlockSpec((None, None, 1, bq), lambda b, n, i, j, *_: (b, n, 0, i)),
  ]
  out_shape = [jax.ShapeDtypeStruct(q_view.shape, q_BTNH.dtype),
               jax.ShapeDtypeStruct((B, N, 1, T), jnp.float32)]
  scratch = [pltpu.VMEM((bq, 1), jnp.float32), pltpu.VMEM((bq, 1), jnp.float32),
             pltpu.VMEM((bq, H), jnp.float32)]
  sinks = None if sinks_N is None else sinks_N.astype(jnp.float32)
  call = _pallas(functools.partial(_fwd_kernel, cfg=cfg, nq=nq, nk=nk), cfg, (B, N, nq, nk),
                 len(prefetch), in_specs, out_specs, out_shape, scratch, "flash_sink_fwd")
  o_view, lse_BN1T = call(*prefetch, q_view, k_view, v_view, q_ids, kv_ids, sinks)
  return _from_tile_view(o_view, q_BTNH.shape), lse_BN1T[:, :, 0, :]


# ---------------------------------------------------------------------------------------- backward


def _dq_kernel(*refs, cfg, nq, nk):
  ranges = refs[:4] if cfg.has_segments else None
  refs = refs[4:] if cfg.has_segments else refs
  (q_ref, k_ref, v_ref, do_ref, lse_ref, delta_ref, q_ids_ref, kv_ids_ref, dq_ref,
   acc_ref) = refs
  b, i, j = pl.program_id(0), pl.program_id(2), pl.program_id(3)

  @pl.when(j == 0)
  def init():
    acc_ref[...] = jnp.zeros(acc_ref.shape, jnp.float32)

  def compute():
    s_QK = lax.dot_general(q_ref[...], k_ref[...], _NT,
                           preferred_element_type=jnp.float32) * cfg.scale
    p_QK = jnp.exp(s_QK - jnp.expand_dims(lse_ref[0], -1))
    q_ids = None if q_ids_ref is None else jnp.expand_dims(q_ids_ref[0], -1)
    kv_ids = None if kv_ids_ref is None else kv_ids_ref[...]
    mask = _block_mask(i * cfg.block_q, j * cfg.block_k, s_QK.shape, cfg.causal, q_ids, kv_ids,
                       rows_are_queries=True)
    if mask is not None:
      p_QK = jnp.where(mask, p_QK, 0.0)
    dp_QK = lax.dot_general(do_ref[...], v_ref[...], _NT, preferred_element_type=jnp.float32)
    ds_QK = p_QK * (dp_QK - jnp.expand_dims(delta_ref[0], -1))
    acc_ref[...] += lax.dot_general(ds_QK.astype(k_ref.dtype), k_ref[...], _NN,
                                    preferred_element_type=jnp.float32)

  _when(_visible(cfg, b, i, j, nq, nk, ranges), compute)

  @pl.when(j == nk - 1)
  def finish():
    dq_ref[...] = (acc_ref[...] * cfg.scale).astype(dq_ref.dtype)


def _dkv_kernel(*refs, cfg, nq, nk, groups):
  ranges = refs[:4] if cfg.has_segments else None
  refs = refs[4:] if cfg.has_segments else refs
  (q_ref, k_ref, v_ref, do_ref, lse_ref, delta_ref, q_ids_ref, kv_ids_ref, dk_ref, dv_ref,
   dk_acc_ref, dv_acc_ref) = refs
  b, j, t = pl.program_id(0), pl.program_id(2), pl.program_id(3)
  i = t % nq  # the innermost axis walks (group member g, q block i) of this kv head

  @pl.when(t == 0)
  def init():
    dk_acc_ref[...] = jnp.zeros(dk_acc_ref.shape, jnp.float32)
    dv_acc_ref[...] = jnp.zeros(dv_acc_ref.shape, jnp.float32)

  def compute():
    # Transposed orientation (keys on rows): L and Δ are then row vectors, as they are stored.
    s_KQ = lax.dot_general(k_ref[...], q_ref[...], _NT,
                           preferred_element_type=jnp.float32) * cfg.scale
    p_KQ = jnp.exp(s_KQ - lse_ref[...])
    kv_ids = None if kv_ids_ref is None else jnp.expand_dims(kv_ids_ref[0], -1)
    q_ids = None if q_ids_ref is None else q_ids_ref[...]
    mask = _block_mask(j * cfg.block_k, i * cfg.block_q, s_KQ.shape, cfg.causal, kv_ids, q_ids,
                       rows_are_queries=False)
    if mask is not None:
      p_KQ = jnp.where(mask, p_KQ, 0.0)
    dv_acc_ref[...] += lax.dot_general(p_KQ.astype(do_ref.dtype), do_ref[...], _NN,
                                       preferred_element_type=jnp.float32)
    dp_KQ = lax.dot_general(v_ref[...], do_ref[...], _NT, preferred_element_type=jnp.float32)
    ds_KQ = p_KQ * (dp_KQ - delta_ref[...])
    dk_acc_ref[...] += lax.dot_general(ds_KQ.astype(q_ref.dtype), q_ref[...], _NN,
                                       preferred_element_type=jnp.float32)

  _when(_visible(cfg, b, i, j, nq, nk, ranges), compute)

  @pl.when(t == groups * nq - 1)
  def finish():
    dk_ref[...] = (dk_acc_ref[...] * cfg.scale).astype(dk_ref.dtype)
    dv_ref[...] = dv_acc_ref[...].astype(dv_ref.dtype)


def backward(q_BTNH, k_BSKH, v_BSKH, q_segment_ids_BT, kv_segment_ids_BS, lse_BNT, delta_BNT,
             do_BTNH, cfg):
  """Returns (dq_BTNH, dk_BSKH, dv_BSKH) in the inputs' dtypes."""
  B, T, N, H = q_BTNH.shape
  S, K = k_BSKH.shape[1], k_BSKH.shape[2]
  G, bq, bk = N // K, cfg.block_q, cfg.block_k
  nq, nk = T // bq, S // bk
  q_view, q_idx = _tile_view(q_BTNH, bq)
  do_view, _ = _tile_view(do_BTNH.astype(q_BTNH.dtype), bq)
  k_view, k_idx = _tile_view(k_BSKH, bk)
  v_view, _ = _tile_view(v_BSKH, bk)
  lse_BN1T, delta_BN1T = lse_BNT[:, :, None, :], delta_BNT[:, :, None, :]
  prefetch, q_ids, kv_ids = _segment_inputs(cfg, q_segment_ids_BT, kv_segment_ids_BS)

  # dQ: grid (b, q head, q block i, kv block j), accumulating over j.
  def kv_block(i, j):
    return jnp.minimum(j, (i * bq + bq - 1) // bk) if cfg.causal else j

  q_spec = pl.BlockSpec((None, bq, H), lambda b, n, i, j, *_: q_idx(b, n, i))
  kv_spec = pl.BlockSpec((None, bk, H), lambda b, n, i, j, *_: k_idx(b, n // G, kv_block(i, j)))
  row_spec = pl.BlockSpec((None, None, 1, bq), lambda b, n, i, j, *_: (b, n, 0, i))
  in_specs = [
      q_spec, kv_spec, kv_spec, q_spec, row_spec, row_spec,
      None if q_ids is None else pl.BlockSpec((None, 1, bq), lambda b, n, i, j, *_: (b, 0, i)),
      None if kv_ids is None else pl.BlockSpec(
          (None, 1, bk), lambda b, n, i, j, *_: (b, 0, kv_block(i, j))),
  ]
  call = _pallas(functools.partial(_dq_kernel, cfg=cfg, nq=nq, nk=nk), cfg, (B, N, nq, nk),
                 len(prefetch), in_specs, q_spec, jax.ShapeDtypeStruct(q_view.shape, q_BTNH.dtype),
                 [pltpu.VMEM((bq, H), jnp.float32)], "flash_sink_bwd_dq")
  dq_view = call(*prefetch, q_view, k_view, v_view, do_view, lse_BN1T, delta_BN1T, q_ids, kv_ids)

  # dK, dV: grid (b, kv head, kv block j, t = g * nq + i), accumulating over the G query heads
  # that share this kv head and over all q blocks, so GQA needs no [B, S, N, H] intermediate.
  def q_block(j, t):
    i = t % nq
    # Before the diagonal nothing is computed: keep the first useful tile (no new DMA). Clamped
    # to the last q block for kv blocks that no query sees (S > T).
    return jnp.minimum(jnp.maximum(i, (j * bk) // bq), nq - 1) if cfg.causal else i

  def q_head(kh, t):
    return kh * G + t // nq

  q_spec = pl.BlockSpec((None, bq, H), lambda b, kh, j, t, *_: q_idx(b, q_head(kh, t),
                                                                     q_block(j, t)))
  kv_spec = pl.BlockSpec((None, bk, H), lambda b, kh, j, t, *_: k_idx(b, kh, j))
  row_spec = pl.BlockSpec((None, None, 1, bq),
                          lambda b, kh, j, t, *_: (b, q_head(kh, t), 0, q_block(j, t)))
  in_specs = [
      q_spec, kv_spec, kv_spec, q_spec, row_spec, row_spec,
      None if q_ids is None else pl.BlockSpec(
          (None, 1, bq), lambda b, kh, j, t, *_: (b, 0, q_block(j, t))),
      None if kv_ids is None else pl.BlockSpec((None, 1, bk), lambda b, kh, j, t, *_: (b, 0, j)),
  ]
  out_shape = [jax.ShapeDtypeStruct(k_view.shape, k_BSKH.dtype),
               jax.ShapeDtypeStruct(v_view.shape, v_BSKH.dtype)]
  scratch = [pltpu.VMEM((bk, H), jnp.float32), pltpu.VMEM((bk, H), jnp.float32)]
  call = _pallas(functools.partial(_dkv_kernel, cfg=cfg, nq=nq, nk=nk, groups=G), cfg,
                 (B, K, nk, G * nq), len(prefetch), in_specs, [kv_spec, kv_spec], out_shape,
                 scratch, "flash_sink_bwd_dkv")
  dk_view, dv_view = call(*prefetch, q_view, k_view, v_view, do_view, lse_BN1T, delta_BN1T, q_ids,
                          kv_ids)
  return (_from_tile_view(dq_view, q_BTNH.shape), _from_tile_view(dk_view, k_BSKH.shape),
          _from_tile_view(dv_view, v_BSKH.shape))
