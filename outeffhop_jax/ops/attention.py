"""Scaled dot-product attention with a pluggable normalizer; the one dispatcher to fused kernels.

Layout as `jax.nn.dot_product_attention`: query [B, T, N, H], key/value [B, S, K, H] with K dividing N
(grouped-query attention: query head n reads kv head n // (N / K)).

    out[b, t, n] = sum_s p[b, n, t, s] v[b, s, n // G],   p = normalizer(scale * q . k, where=mask)

With a sink logit s_n per head (softmax1 is s = 0) the probabilities of a row sum to < 1 and a fully
masked row gives exactly 0 output. Implementations:
  "reference"  materialises the [B, N, T, S] scores (XLA); every normalizer.
  "blockwise"  pure-JAX flash attention, O(T * block_k) memory: the sink family
               (`ops.blockwise_attention`) and the kinds "elementwise" / "l1" (sigmoid, softplus,
               stablemax, softpick: `ops.blockwise_alternatives`).
  "pallas"     the Pallas flash kernel with a sink logit (`outeffhop_jax.kernels`); interpret mode on CPU.
  "cudnn"      `jax.nn.dot_product_attention` with one zero key/value appended as the sink (GPU).
  "splash"     JAX's TPU splash attention with sinks.
  None         the best available for the platform (see `select_implementation`).
The fused paths ("pallas", "cudnn", "splash") take the sink family only; any other normalizer
raises a ValueError before any compute.
"""
from __future__ import annotations

import logging
import math

import jax
import jax.numpy as jnp

from outeffhop_jax.ops import _checks
from outeffhop_jax.ops import fused
from outeffhop_jax.ops.blockwise import blockwise_attention
from outeffhop_jax.ops.blockwise_alternatives import blockwise_alternative_attention
from outeffhop_jax.ops.registry import Normalizer, get_normalizer

IMPLEMENTATIONS = ("reference", "blockwise", "pallas", "cudnn", "splash", None)
FUSED = ("pallas", "cudnn", "splash")
BLOCKWISE_KINDS = ("sink", "elementwise", "l1")  # the kinds "blockwise" computes


def _as_4d_mask(mask, B, N, T, S):
  mask = jnp.asarray(mask)
  if mask.dtype != jnp.bool_:
    raise TypeError(f"mask must be a boolean array (True = attend), got dtype {mask.dtype}")
  _checks.check_broadcastable(mask.shape, (B, N, T, S), "mask", "[batch, heads, q_len, kv_len]")
  return mask.reshape((1,) * (4 - mask.ndim) + mask.shape)


def validate_attention_args(query, key, value, mask, sinks, scale):
  """Checks shapes and dtypes; returns (B, T, N, S, K, H, scale). Raises before any compute."""
  for name, x in (("query", query), ("key", key), ("value", value)):
    _checks.check_rank(x, 4, name, "[batch, seq, heads, head_dim]")
    _checks.check_floating(x, name)
  B, T, N, H = query.shape
  _, S, K, Hk = key.shape
  if key.shape[0] != B or value.shape[0] != B:
    raise ValueError(f"query, key and value must share the batch size, got {query.shape[0]}, "
                     f"{key.shape[0]}, {value.shape[0]}")
  if Hk != H:
    raise ValueError(f"key head_dim {Hk} must equal query head_dim {H}")
  if value.shape[:3] != key.shape[:3]:
    raise ValueError(f"value shape {tuple(value.shape)} must match key shape {tuple(key.shape)} "
                     "in [batch, kv_len, kv_heads]")
  if N % K:
    raise ValueError(f"query heads ({N}) must be a multiple of key/value heads ({K})")
  if mask is not None:
    _as_4d_mask(mask, B, N, T, S)
  if sinks is not None:
    sinks = jnp.asarray(sinks)
    if sinks.shape not in ((), (N,)):
      raise ValueError(f"sinks must be a scalar or of shape [num_heads]=({N},), got {sinks.shape}")
  if scale is None:
    scale = 1.0 / math.sqrt(H)
  elif isinstance(scale, (int, float)) and scale <= 0:
    raise ValueError(f"scale must be > 0, got {scale}")
  return B, T, N, S, K, H, scale


def _valid_mask(mask, causal, B, N, T, S):
  """Boolean [B|1, N|1, T, S] mask combining `mask` and causality, or None."""
  valid = None if mask is None else _as_4d_mask(mask, B, N, T, S)
  if causal:
    causal_TS = jnp.arange(S)[None, :] <= jnp.arange(T)[:, None]
    valid = causal_TS if valid is None else jnp.logical_and(valid, causal_TS)
  return valid


def _resolve_normalizer(normalizer, sinks, N):
  norm = get_normalizer(normalizer)
  if sinks is None:
    return norm
  sinks_N1 = jnp.broadcast_to(jnp.asarray(sinks, jnp.float32), (N,))[:, None]
  return norm.with_sinks(sinks_N1)


def attention_weights(query, key, *, normalizer="softmax1", mask=None, causal=False, sinks=None,
                      scale=None):
  """Attention probabilities [B, N, T, S] (float32) exactly as the "reference" path uses them."""
  B, T, N, S, K, H, scale = validate_attention_args(query, key, key, mask, sinks, scale)
  norm = _resolve_normalizer(normalizer, sinks, N)
  q_BTKGH = query.reshape(B, T, K, N // K, H)
  logits = jnp.einsum("btkgh,bskh->bkgts", q_BTKGH, key, preferred_element_type=jnp.float32)
  logits_BNTS = logits.reshape(B, N, T, S) * scale
  valid = _valid_mask(mask, causal, B, N, T, S)
  return norm(logits_BNTS, axis=-1, where=valid).astype(jnp.float32)


def _reference_attention(query, key, value, normalizer, mask, causal, sinks, scale):
  B, T, N, H = query.shape
  K = key.shape[2]
  p_BNTS = attention_weights(query, key, normalizer=normalizer, mask=mask, causal=causal,
                             sinks=sinks, scale=scale)
  p_BKGTS = p_BNTS.reshape(B, K, N // K, T, -1)
  out = jnp.einsum("bkgts,bskh->btkgh", p_BKGTS, value.astype(jnp.float32))
  return out.reshape(B, T, N, value.shape[-1]).astype(query.dtype)


def _sinks_for(norm: Normalizer, sinks, N):
  """[N] float32 sink logits, or None for plain softmax without explicit sinks."""
  if sinks is not None:
    return jnp.broadcast_to(jnp.asarray(sinks, jnp.float32), (N,))
  if norm.sink == -math.inf:
    return None
  return jnp.full((N,), norm.sink, jnp.float32)


_REFERENCE_SCORE_BYTES = 2**30  # above this, CPU prefers the blockwise path


def _fused_ok(mask, head_dim, platform):
  """(ok, reason) for the fused kernels; they take key-padding masks only."""
  if mask is not None and (mask.shape[1] != 1 or mask.shape[2] != 1):
    return False, f"mask of shape {tuple(mask.shape)} is not a key-padding mask [B, 1, 1, S]"
  if platform == "gpu" and (head_dim < 16 or head_dim & (head_dim - 1)):
    return False, f"head_dim={head_dim} is not a power of two >= 16 (Triton)"
  if platform == "tpu" and head_dim % 64:
    return False, f"head_dim={head_dim} is not a multiple of 64 (Mosaic)"
  return True, ""


def select_implementation(normalizer, *, shape=None, mask=None, platform=None) -> str:
  """The implementation `implementation=None` picks, logging the reason of any fallback.

  Accelerators: the Pallas flash kernel (TPU: splash when head_dim is a multiple of 128), falling
  back to "blockwise" when a kernel does not fit. CPU: "reference", or "blockwise" once the
  [B, N, T, S] float32 scores would pass 1 GiB. Kinds "elementwise" / "l1" (no fused kernel): that
  same CPU rule on every platform. Kinds "clipped" / "sparse": "reference".
  shape: (B, T, N, S, H) of the call.
  """
  norm = get_normalizer(normalizer)
  platform = platform or jax.default_backend()
  if norm.kind not in BLOCKWISE_KINDS:
    return "reference"
  B, T, N, S, H = shape or (1, 1, 1, 1, 128)
  if platform == "cpu" or norm.kind != "sink":
    return "blockwise" if 4 * B * N * T * S > _REFERENCE_SCORE_BYTES else "reference"
  ok, reason = _fused_ok(mask, H, platform)
  if not ok:
    logging.info("dot_product_attention: falling back to 'blockwise': %s", reason)
    return "blockwise"
  if platform == "tpu" and H % 128 == 0:
    return "splash"
  return "pallas"


def check_implementation(normalizer, implementation) -> None:
  """Raises ValueError, before any compute, if `implementation` cannot run `normalizer`."""
  norm = get_normalizer(normalizer)
  if implementation in FUSED and norm.kind != "sink":
    raise ValueError(f"implementation {implementation!r} supports only the softmax/sink family; use "
                     f"'reference' or 'blockwise' for normalizer {norm.spec!r}"
                     if norm.kind in BLOCKWISE_KINDS else
                     f"implementation {implementation!r} supports only the softmax/sink family; use "
                     f"'reference' for normalizer {norm.spec!r}")
  if implementation == "blockwise" and norm.kind not in BLOCKWISE_KINDS:
    raise ValueError(f"implementation 'blockwise' supports the softmax/sink family and sigmoid, "
                     f"softplus, stablemax, softpick; use 'reference' for normalizer {norm.spec!r}")


def dot_product_attention(query, key, value, *, normalizer="softmax1", mask=None, causal=False,
                          sinks=None, scale=None, implementation="reference", block_k=None):
  """Multi-head attention with a normalizer from the registry (default Softmax_1).

  Args:
    query: [B, T, N, H] float.
    key, value: [B, S, K, H] float, K divides N (grouped-query attention).
    normalizer: spec string or `Normalizer` ("softmax", "softmax1", "softmax_n:N", "clipped:G:Z",
      "sigmoid", "softplus", "stablemax", "softpick", ...).
    mask: boolean, broadcastable to [B, N, T, S]; True = attend.
    causal: key j is visible to query i iff j <= i (top-left aligned, as jax.nn).
    sinks: optional per-head sink logits [N] (or a scalar); overrides the normalizer's sink, so
      sinks=0 is softmax1 whatever the normalizer of the sink family. Differentiable.
    scale: logit scale, default 1 / sqrt(H).
    implementation: see the module docstring.
    block_k: key block size of the "blockwise" (default min(512, S)) and fused paths (default 128).
  Returns:
    [B, T, N, H] in query's dtype.
  """
  B, T, N, S, K, H, scale = validate_attention_args(query, key, value, mask, sinks, scale)
  if implementation not in IMPLEMENTATIONS:
    raise ValueError(f"implementation must be one of {IMPLEMENTATIONS}, got {implementation!r}")
  norm = get_normalizer(normalizer)
  if sinks is not None and norm.kind != "sink":
    raise ValueError(f"sinks are only defined for the softmax/sink family, not normalizer {norm.spec!r}")
  check_implementation(norm, implementation)
  mask4 = None if mask is None else _as_4d_mask(mask, B, N, T, S)
  if implementation is None:
    implementation = select_implementation(norm, shape=(B, T, N, S, H), mask=mask4)
  if implementation == "reference":
    return _reference_attention(query, key, value, norm, mask, causal, sinks, scale)
  if norm.kind != "sink":  # "blockwise" with an elementwise / l1 normalizer
    return blockwise_alternative_attention(query, key, value, norm, mask=mask4, causal=causal,
                                           scale=scale, block_k=block_k)
  sinks_N = _sinks_for(norm, sinks, N)
  if implementation == "blockwise":
    if sinks_N is None:
      sinks_N = jnp.full((N,), -jnp.inf, jnp.float32)
    return blockwise_attention(query, key, value, sinks_N, mask=mask4, causal=causal, scale=scale,
                               block_k=block_k)
  if implementation in ("pallas", "splash"):
    kw = {} if block_k is None else {"block_k": block_k}
    return fused.pallas_attention(query, key, value, sinks_N, mask=mask4, causal=causal, scale=scale,
                                  splash=implementation == "splash", **kw)
  return fused.cudnn_attention(query, key, value, sinks_N, mask=mask4, causal=causal, scale=scale)
