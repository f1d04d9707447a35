"""Public flash attention with an optional per-head sink logit: checks, dispatch, custom VJP.

  o_i = Σ_j exp(s_ij - L_i) v_j,   L_i = log(exp(sink) + Σ_j exp(s_ij)),   s_ij = scale · q_i·k_j

over visible keys j (causal, segment ids). sinks = 0 is softmax_1; sinks=None is plain softmax.
Forward saves L; the backward recomputes p_ij = exp(s_ij - L_i) with Δ_i = Σ_h O_ih dO_ih:
dS = p ⊙ (dP - Δ), dsink = -Σ_i exp(sink - L_i) Δ_i (summed over batch and rows).
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from outeffhop_jax.kernels import _common
from outeffhop_jax.kernels import flash_tpu
from outeffhop_jax.kernels import flash_triton
from outeffhop_jax.kernels._common import FlashConfig

_BACKENDS = {"tpu": flash_tpu, "triton": flash_triton}
_BACKEND_ALIASES = {"tpu": "tpu", "mosaic_tpu": "tpu", "triton": "triton", "gpu": "triton"}
_DTYPES = (jnp.dtype(jnp.float32), jnp.dtype(jnp.bfloat16))


def _resolve_backend(backend):
  if backend is None:
    # On CPU the TPU kernels run in interpret mode (the GPU ones can be asked for by name).
    return "triton" if jax.default_backend() == "gpu" else "tpu"
  if backend not in _BACKEND_ALIASES:
    raise ValueError(f"backend={backend!r}: expected one of {sorted(_BACKEND_ALIASES)} or None.")
  return _BACKEND_ALIASES[backend]


def _check(q, k, v, sinks, causal, q_segment_ids, kv_segment_ids, block_q, block_k, backend,
           interpret):
  """Validates a call and returns (backend, interpret, block_q, block_k); raises ValueError."""
  del causal  # every causal setting is supported
  backend = _resolve_backend(backend)
  auto_interpret = interpret is None
  interpret = _common.default_interpret() if auto_interpret else bool(interpret)
  if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
    raise ValueError(f"q, k, v must be [batch, seq, heads, head_dim]; got q{q.shape} k{k.shape} "
                     f"v{v.shape}.")
  B, T, N, H = q.shape
  _, S, K, _ = k.shape
  if k.shape != v.shape or k.shape[0] != B or k.shape[3] != H:
    raise ValueError(f"k{k.shape} and v{v.shape} must be equal and share batch and head_dim "
                     f"with q{q.shape}.")
  if N % K:
    raise ValueError(f"q heads ({N}) must be a multiple of k/v heads ({K}) for GQA.")
  for name, x in (("q", q), ("k", k), ("v", v)):
    if jnp.dtype(x.dtype) not in _DTYPES:
      raise ValueError(f"{name}.dtype={x.dtype}: flash_attention supports float32 and bfloat16.")
  if not (q.dtype == k.dtype == v.dtype):
    raise ValueError(f"q, k, v dtypes differ: {q.dtype}, {k.dtype}, {v.dtype}.")
  if sinks is not None and (np.ndim(sinks) > 1 or np.shape(sinks) not in ((), (N,))):
    raise ValueError(f"sinks must be a scalar or of shape [{N}] (q heads); got "
                     f"{np.shape(sinks)}.")
  if (q_segment_ids is None) != (kv_segment_ids is None):
    raise ValueError("q_segment_ids and kv_segment_ids must be given together.")
  if q_segment_ids is not None:
    if tuple(q_segment_ids.shape) != (B, T) or tuple(kv_segment_ids.shape) != (B, S):
      raise ValueError(f"segment ids must be [B, T]=({B}, {T}) and [B, S]=({B}, {S}); got "
                       f"{tuple(q_segment_ids.shape)} and {tuple(kv_segment_ids.shape)}.")
    for name, ids in (("q_segment_ids", q_segment_ids), ("kv_segment_ids", kv_segment_ids)):
      if not jnp.issubdtype(ids.dtype, jnp.integer):
        raise ValueError(f"{name}.dtype={ids.dtype}: segment ids must be integers.")
  block_q, block_k = min(block_q, T), min(block_k, S)
  for name, block, seq in (("block_q", block_q, T), ("block_k", block_k, S)):
    if block <= 0 or seq % block:
      raise ValueError(f"{name}={block} must divide the sequence length {seq} (pad the sequence "
                       "and mask the padding with segment ids).")
  if backend == "tpu" and not interpret:
    if H % 64:
      raise ValueError(f"head_dim={H}: the TPU kernel needs a multiple of 64.")
    for name, block in (("block_q", block_q), ("block_k", block_k)):
      if block % 128:
        raise ValueError(f"{name}={block}: the TPU kernel needs a multiple of 128 (lane width).")
  if backend == "triton":
    if H < 16 or H & (H - 1):
      raise ValueError(f"head_dim={H}: the Triton kernel needs a power of two >= 16.")
    for name, block in (("block_q", block_q), ("block_k", block_k)):
      if block < 16 or block & (block - 1):
        raise ValueError(f"{name}={block}: the Triton kernel needs a power of two >= 16.")
  # An explicit interpret=False is trusted (ahead-of-time compilation / export for another
  # platform); the automatic choice must match the platform the call will run on.
  if auto_interpret and not interpret:
    platform = jax.default_backend()
    want = {"tpu": "tpu", "triton": "gpu"}[backend]
    if platform != want:
      raise ValueError(f"backend={backend!r} compiles for {want}, but the default platform is "
                       f"{platform!r}; pass interpret=True to run it in the Pallas interpreter.")
  return backend, interpret, block_q, block_k


def flash_attention_supported(q, k, v, *, sinks=None, causal=False, q_segment_ids=None,
                              kv_segment_ids=None, scale=None, block_q=128, block_k=128,
                              backend=None, interpret=None):
  """(True, "") if `flash_attention` accepts these arguments (arrays or ShapeDtypeStructs), else
  (False, reason) — for a dispatcher that falls back with a logged reason. Takes the same
  keywords as `flash_attention` (scale is accepted for symmetry; every scale is supported)."""
  del scale
  try:
    _check(q, k, v, sinks, causal, q_segment_ids, kv_segment_ids, block_q, block_k, backend,
           interpret)
  except ValueError as e:
    return False, str(e)
  return True, ""


def flash_attention(q_BTNH, k_BSKH, v_BSKH, *, sinks=None, causal=False, q_segment_ids=None,
                    kv_segment_ids=None, scale=None, block_q=128, block_k=128, interpret=None,
                    backend=None):
  """Fused attention with an optional sink logit per head; returns o_BTNH in q's dtype.

  q [B, T, N, H]; k, v [B, S, K, H] with N % K == 0 (GQA); float32 or bfloat16 (float32
  accumulation). sinks: None (plain softmax), a scalar or [N] float sink logits (0 = softmax_1);
  differentiable. causal: key j visible to query i iff j <= i (top-left aligned). q/kv_segment_ids
  [B, T] / [B, S] int: query i sees key j iff their ids are equal (mark padding keys with an id
  no query has, e.g. 0 against queries' 1). A query with no visible key outputs exactly 0 (its
  sink absorbs everything; without a sink 0 by definition) with finite gradients.
  scale defaults to H**-0.5. block_q/block_k are clipped to the sequence lengths and must divide
  them. backend: "tpu" (Mosaic), "triton" (GPU; alias "gpu") or None (from the default platform;
  CPU uses "tpu" interpreted). interpret=None interprets when the default platform is CPU.
  """
  backend, interpret, block_q, block_k = _check(
      q_BTNH, k_BSKH, v_BSKH, sinks, causal, q_segment_ids, kv_segment_ids, block_q, block_k,
      backend, interpret)
  N, H = q_BTNH.shape[2], q_BTNH.shape[3]
  cfg = FlashConfig(
      scale=float(1.0 / math.sqrt(H) if scale is None else scale), causal=bool(causal),
      block_q=block_q, block_k=block_k, has_sinks=sinks is not None,
      has_segments=q_segment_ids is not None, backend=backend, interpret=interpret)
  sinks_N = None if sinks is None else jnp.broadcast_to(
      jnp.asarray(sinks, jnp.float32), (N,))
  return _flash(q_BTNH, k_BSKH, v_BSKH, sinks_N, q_segment_ids, kv_segment_ids, cfg)


@functools.partial(jax.custom_vjp, nondiff_argnums=(6,))
def _flash(q_BTNH, k_BSKH, v_BSKH, sinks_N, q_segment_ids, kv_segment_ids, cfg):
  o_BTNH, _ = _BACKENDS[cfg.backend].forward(q_BTNH, k_BSKH, v_BSKH, sinks_N, q_segment_ids,
                                             kv_segment_ids, cfg)
  return o_BTNH


def _flash_fwd(q_BTNH, k_BSKH, v_BSKH, sinks_N, q_segment_ids, kv_segment_ids, cfg):
  o_BTNH, lse_BNT = _BACKENDS[cfg.backend].forward(q_BTNH, k_BSKH, v_BSKH, sinks_N,
                                                   q_segment_ids, kv_segment_ids, cfg)
  return o_BTNH, (q_BTNH, k_BSKH, v_BSKH, sinks_N, q_segment_ids, kv_segment_ids, o_BTNH,
                  lse_BNT)


def _flash_bwd(cfg, residuals, do_BTNH):
  q_BTNH, k_BSKH, v_BSKH, sinks_N, q_segment_ids, kv_segment_ids, o_BTNH, lse_BNT = residuals
  delta_BNT = _common.row_delta(o_BTNH, do_BTNH)
  dq, dk, dv = _BACKENDS[cfg.backend].backward(q_BTNH, k_BSKH, v_BSKH, q_segment_ids,
                                               kv_segment_ids, lse_BNT, delta_BNT, do_BTNH, cfg)
  dsinks_N = None if sinks_N is None else _common.sink_grad(sinks_N, lse_BNT, delta_BNT)
  return dq, dk, dv, dsinks_N, None, None


_flash.defvjp(_flash_fwd, _flash_bwd)
