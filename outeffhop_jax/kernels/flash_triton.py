"""Flash attention with a sink logit as Pallas GPU kernels (Triton lowering; interpret mode on CPU).

Each program owns one tile and loops over the other sequence in blocks (GPU style: the grid is
fully parallel, the reduction is a `fori_loop` in registers). Works on [B, T, N, H] directly:
a (block, H) tile of head n is the block (None, block, None, H). Three pallas_calls: forward
(O, L), dQ (one program per q tile) and dK/dV (one program per kv tile and *query* head; the
G = N / K query heads of a kv head are summed afterwards in XLA).
"""
from __future__ import annotations

import dataclasses
import functools

import jax
from jax import lax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plgpu

from outeffhop_jax.kernels import _common
from outeffhop_jax.kernels._common import MASK_VALUE


def _dot(a, b, *, trans_b=False):
  # float32 inputs: full precision (no TF32), so f32 results match the reference tightly.
  precision = lax.Precision.HIGHEST if a.dtype == jnp.float32 else None
  return plgpu.dot(a, b, trans_b=trans_b, precision=precision)


def _mask(row0, col0, shape, causal, row_ids, col_ids, rows_are_queries):
  # Triton blocks load segment ids as 1-D vectors: broadcast them to the tile here.
  same = None if row_ids is None else row_ids[:, None] == col_ids[None, :]
  return _common.tile_mask(row0, col0, shape, causal, same, rows_are_queries)


def _skip_unless(overlap, fn, carry):
  """fn(carry) if the tile pair may share a segment id, else carry unchanged (block skipping)."""
  if overlap is None:
    return fn(carry)
  return lax.cond(overlap, fn, lambda c: c, carry)


def _overlap(a_ids, b_ids):
  if a_ids is None:
    return None
  return _common.ranges_overlap(jnp.min(a_ids), jnp.max(a_ids), jnp.min(b_ids), jnp.max(b_ids))


def _params(block_a, block_b, head_dim):
  warps = 4 if block_a * block_b <= 64 * 64 or head_dim <= 64 else 8
  return plgpu.CompilerParams(num_warps=warps, num_stages=2)


# ----------------------------------------------------------------------------------------- forward


def _fwd_kernel(q_ref, k_ref, v_ref, q_ids_ref, kv_ids_ref, sinks_ref, o_ref, lse_ref, *, cfg,
                nk):
  bq, bk = cfg.block_q, cfg.block_k
  i = pl.program_id(0)
  q_QH = q_ref[...]
  q_ids = None if q_ids_ref is None else q_ids_ref[...]
  # The sink is a logit every row sees: start the online softmax from it (m = s, l = e^0 = 1).
  if sinks_ref is not None:
    m_Q, l_Q = sinks_ref[...].astype(jnp.float32), jnp.ones((bq,), jnp.float32)
  else:
    m_Q, l_Q = jnp.full((bq,), MASK_VALUE, jnp.float32), jnp.zeros((bq,), jnp.float32)
  acc_QH = jnp.zeros(q_QH.shape, jnp.float32)

  def body(j, carry):
    kv_slice = pl.ds(j * bk, bk)
    kv_ids = None if kv_ids_ref is None else kv_ids_ref[kv_slice]

    def compute(carry):
      m_prev_Q, l_prev_Q, acc_prev_QH = carry
      s_QK = _dot(q_QH, k_ref[kv_slice, :], trans_b=True) * cfg.scale
      mask = _mask(i * bq, j * bk, s_QK.shape, cfg.causal, q_ids, kv_ids, True)
      if mask is not None:
        s_QK = jnp.where(mask, s_QK, MASK_VALUE)
      m_next_Q = jnp.maximum(m_prev_Q, jnp.max(s_QK, axis=-1))
      p_QK = jnp.exp(s_QK - m_next_Q[:, None])
      if mask is not None:  # a fully masked row of this tile would otherwise add exp(0) = 1
        p_QK = jnp.where(mask, p_QK, 0.0)
      alpha_Q = jnp.exp(m_prev_Q - m_next_Q)
      v_KH = v_ref[kv_slice, :]
      acc_QH = alpha_Q[:, None] * acc_prev_QH + _dot(p_QK.astype(v_KH.dtype), v_KH)
      return m_next_Q, alpha_Q * l_prev_Q + jnp.sum(p_QK, axis=-1), acc_QH

    return _skip_unless(_overlap(q_ids, kv_ids), compute, carry)

  # Causal: kv blocks past the diagonal are never visited.
  upper = jnp.minimum(lax.div((i + 1) * bq + bk - 1, bk), nk) if cfg.causal else nk
  m_Q, l_Q, acc_QH = lax.fori_loop(0, upper, body, (m_Q, l_Q, acc_QH))
  empty_Q = l_Q == 0.0  # only without a sink: no visible key, output defined as 0
  l_safe_Q = jnp.where(empty_Q, 1.0, l_Q)
  o_ref[...] = (acc_QH / l_safe_Q[:, None]).astype(o_ref.dtype)
  lse_ref[...] = jnp.where(empty_Q, 0.0, m_Q + jnp.log(l_safe_Q))


def forward(q_BTNH, k_BSKH, v_BSKH, sinks_N, q_segment_ids_BT, kv_segment_ids_BS, cfg):
  """Returns (o_BTNH in q.dtype, lse_BNT float32 log-sum-exp including the sink)."""
  B, T, N, H = q_BTNH.shape
  S, K = k_BSKH.shape[1], k_BSKH.shape[2]
  G, bq, bk = N // K, cfg.block_q, cfg.block_k
  in_specs = [
      pl.BlockSpec((None, bq, None, H), lambda i, b, n: (b, i, n, 0)),
      pl.BlockSpec((None, S, None, H), lambda i, b, n: (b, 0, n // G, 0)),
      pl.BlockSpec((None, S, None, H), lambda i, b, n: (b, 0, n // G, 0)),
      None if q_segment_ids_BT is None else pl.BlockSpec((None, bq), lambda i, b, n: (b, i)),
      None if kv_segment_ids_BS is None else pl.BlockSpec((None, S), lambda i, b, n: (b, 0)),
      None if sinks_N is None else pl.BlockSpec((None, bq), lambda i, b, n: (n, 0)),
  ]
  out_specs = [pl.BlockSpec((None, bq, None, H), lambda i, b, n: (b, i, n, 0)),
               pl.BlockSpec((None, None, bq), lambda i, b, n: (b, n, i))]
  out_shape = [jax.ShapeDtypeStruct(q_BTNH.shape, q_BTNH.dtype),
               jax.ShapeDtypeStruct((B, N, T), jnp.float32)]
  # Each row of the [N, block_q] sink table is the initial running max of one head's q tile.
  sinks_NQ = None if sinks_N is None else jnp.broadcast_to(
      sinks_N.astype(jnp.float32)[:, None], (N, bq))
  o_BTNH, lse_BNT = pl.pallas_call(
      functools.partial(_fwd_kernel, cfg=cfg, nk=S // bk),
      grid=(T // bq, B, N), in_specs=in_specs, out_specs=out_specs, out_shape=out_shape,
      compiler_params=_params(bq, bk, H), interpret=cfg.interpret, name="flash_sink_fwd",
  )(q_BTNH, k_BSKH, v_BSKH, _ids(q_segment_ids_BT), _ids(kv_segment_ids_BS), sinks_NQ)
  return o_BTNH, lse_BNT


def _ids(ids):
  return None if ids is None else ids.astype(jnp.int32)


# ---------------------------------------------------------------------------------------- backward


def _dq_kernel(q_ref, k_ref, v_ref, do_ref, lse_ref, delta_ref, q_ids_ref, kv_ids_ref, dq_ref, *,
               cfg, nk):
  bq, bk = cfg.block_q, cfg.block_k
  i = pl.program_id(0)
  q_QH, do_QH = q_ref[...], do_ref[...]
  lse_Q, delta_Q = lse_ref[...], delta_ref[...]
  q_ids = None if q_ids_ref is None else q_ids_ref[...]

  def body(j, dq_QH):
    kv_slice = pl.ds(j * bk, bk)
    kv_ids = None if kv_ids_ref is None else kv_ids_ref[kv_slice]

    def compute(dq_QH):
      k_KH, v_KH = k_ref[kv_slice, :], v_ref[kv_slice, :]
      s_QK = _dot(q_QH, k_KH, trans_b=True) * cfg.scale
      p_QK = jnp.exp(s_QK - lse_Q[:, None])
      mask = _mask(i * bq, j * bk, s_QK.shape, cfg.causal, q_ids, kv_ids, True)
      if mask is not None:
        p_QK = jnp.where(mask, p_QK, 0.0)
      ds_QK = p_QK * (_dot(do_QH, v_KH, trans_b=True) - delta_Q[:, None])
      return dq_QH + _dot(ds_QK.astype(k_KH.dtype), k_KH)

    return _skip_unless(_overlap(q_ids, kv_ids), compute, dq_QH)

  upper = jnp.minimum(lax.div((i + 1) * bq + bk - 1, bk), nk) if cfg.causal else nk
  dq_QH = lax.fori_loop(0, upper, body, jnp.zeros(q_QH.shape, jnp.float32))
  dq_ref[...] = (dq_QH * cfg.scale).astype(dq_ref.dtype)


def _dkv_kernel(q_ref, k_ref, v_ref, do_ref, lse_ref, delta_ref, q_ids_ref, kv_ids_ref, dk_ref,
                dv_ref, *, cfg, nq):
  bq, bk = cfg.block_q, cfg.block_k
  j = pl.program_id(0)
  k_KH, v_KH = k_ref[...], v_ref[...]
  kv_ids = None if kv_ids_ref is None else kv_ids_ref[...]

  def body(i, carry):
    q_slice = pl.ds(i * bq, bq)
    q_ids = None if q_ids_ref is None else q_ids_ref[q_slice]

    def compute(carry):
      dk_KH, dv_KH = carry
      q_QH, do_QH = q_ref[q_slice, :], do_ref[q_slice, :]
      # Transposed orientation (keys on rows) so both products below are plain matmuls.
      s_KQ = _dot(k_KH, q_QH, trans_b=True) * cfg.scale
      p_KQ = jnp.exp(s_KQ - lse_ref[q_slice][None, :])
      mask = _mask(j * bk, i * bq, s_KQ.shape, cfg.causal, kv_ids, q_ids, False)
      if mask is not None:
        p_KQ = jnp.where(mask, p_KQ, 0.0)
      dv_KH = dv_KH + _dot(p_KQ.astype(do_QH.dtype), do_QH)
      ds_KQ = p_KQ * (_dot(v_KH, do_QH, trans_b=True) - delta_ref[q_slice][None, :])
      return dk_KH + _dot(ds_KQ.astype(q_QH.dtype), q_QH), dv_KH

    return _skip_unless(_overlap(kv_ids, q_ids), compute, carry)

  # Causal: q blocks before the diagonal never see this kv block.
  lower = lax.div(j * bk, bq) if cfg.causal else 0
  zeros = jnp.zeros(k_KH.shape, jnp.float32)
  dk_KH, dv_KH = lax.fori_loop(lower, nq, body, (zeros, zeros))
  dk_ref[...] = (dk_KH * cfg.scale).astype(dk_ref.dtype)
  dv_ref[...] = dv_KH.astype(dv_ref.dtype)


def backward(q_BTNH, k_BSKH, v_BSKH, q_segment_ids_BT, kv_segment_ids_BS, lse_BNT, delta_BNT,
             do_BTNH, cfg):
  """Returns (dq_BTNH, dk_BSKH, dv_BSKH) in the inputs' dtypes."""
  B, T, N, H = q_BTNH.shape
  S, K = k_BSKH.shape[1], k_BSKH.shape[2]
  # The backward holds about twice the forward's live tiles (q, k, v, dO and two accumulators):
  # cap its tiles at 64 so they fit registers / shared memory. Powers of two, so they still divide.
  cfg = dataclasses.replace(cfg, block_q=min(cfg.block_q, 64), block_k=min(cfg.block_k, 64))
  G, bq, bk = N // K, cfg.block_q, cfg.block_k
  do_BTNH = do_BTNH.astype(q_BTNH.dtype)
  q_ids, kv_ids = _ids(q_segment_ids_BT), _ids(kv_segment_ids_BS)

  q_tile = pl.BlockSpec((None, bq, None, H), lambda i, b, n: (b, i, n, 0))
  kv_full = pl.BlockSpec((None, S, None, H), lambda i, b, n: (b, 0, n // G, 0))
  row_tile = pl.BlockSpec((None, None, bq), lambda i, b, n: (b, n, i))
  in_specs = [q_tile, kv_full, kv_full, q_tile, row_tile, row_tile,
              None if q_ids is None else pl.BlockSpec((None, bq), lambda i, b, n: (b, i)),
              None if kv_ids is None else pl.BlockSpec((None, S), lambda i, b, n: (b, 0))]
  dq_BTNH = pl.pallas_call(
      functools.partial(_dq_kernel, cfg=cfg, nk=S // bk),
      grid=(T // bq, B, N), in_specs=in_specs, out_specs=q_tile,
      out_shape=jax.ShapeDtypeStruct(q_BTNH.shape, q_BTNH.dtype),
      compiler_params=_params(bq, bk, H), interpret=cfg.interpret, name="flash_sink_bwd_dq",
  )(q_BTNH, k_BSKH, v_BSKH, do_BTNH, lse_BNT, delta_BNT, q_ids, kv_ids)

  q_full = pl.BlockSpec((None, T, None, H), lambda j, b, n: (b, 0, n, 0))
  kv_tile = pl.BlockSpec((None, bk, None, H), lambda j, b, n: (b, j, n // G, 0))
  row_full = pl.BlockSpec((None, None, T), lambda j, b, n: (b, n, 0))
  in_specs = [q_full, kv_tile, kv_tile, q_full, row_full, row_full,
              None if q_ids is None else pl.BlockSpec((None, T), lambda j, b, n: (b, 0)),
              None if kv_ids is None else pl.BlockSpec((None, bk), lambda j, b, n: (b, j))]
  # One dK/dV tile per *query* head; with GQA (G > 1) they are summed in float32 below.
  grad_dtype = lambda x: x.dtype if G == 1 else jnp.float32
  out_tile = pl.BlockSpec((None, bk, None, H), lambda j, b, n: (b, j, n, 0))
  dk_BSNH, dv_BSNH = pl.pallas_call(
      functools.partial(_dkv_kernel, cfg=cfg, nq=T // bq),
      grid=(S // bk, B, N), in_specs=in_specs, out_specs=[out_tile, out_tile],
      out_shape=[jax.ShapeDtypeStruct((B, S, N, H), grad_dtype(k_BSKH)),
                 jax.ShapeDtypeStruct((B, S, N, H), grad_dtype(v_BSKH))],
      compiler_params=_params(bq, bk, H), interpret=cfg.interpret, name="flash_sink_bwd_dkv",
  )(q_BTNH, k_BSKH, v_BSKH, do_BTNH, lse_BNT, delta_BNT, q_ids, kv_ids)
  if G > 1:
    dk_BSKH = dk_BSNH.reshape(B, S, K, G, H).sum(axis=3).astype(k_BSKH.dtype)
    dv_BSKH = dv_BSNH.reshape(B, S, K, G, H).sum(axis=3).astype(v_BSKH.dtype)
  else:
    dk_BSKH, dv_BSKH = dk_BSNH, dv_BSNH
  return dq_BTNH, dk_BSKH, dv_BSKH
