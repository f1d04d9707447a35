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
import warnings

import jax
import jax.numpy as jnp

from outeffhop_jax.ops import _checks
from outeffhop_jax.ops import fused
from outeffhop_jax.ops.blockwise import blockwise_attention
from outeffhop_jax.ops.blockwise_alternatives import blockwise_alternative_attention
from outeffhop_jax.ops.registry import Normalizer, get_normalizer

IMPLEMENTATIONS = ("reference", "xla", "blockwise", "pallas", "cudnn", "splash", None)
FUSED = ("pallas", "cudnn", "splash")
BLOCKWISE_KINDS = ("sink", "elementwise", "l1")  # the kinds "blockwise" computes


def _as_4d_mask(mask, B, N, T, S, name="mask"):
  """`mask` (bool, or numeric non-zero = attend) as a boolean array of rank 4 broadcastable to
  [B, N, T, S]; raises before any compute."""
  mask = _checks.as_bool_mask(mask, name)
  _checks.check_broadcastable(mask.shape, (B, N, T, S), name, "[batch, heads, q_len, kv_len]")
  return mask.reshape((1,) * (4 - mask.ndim) + mask.shape)


def _as_4d_bias(bias, B, N, T, S):
  bias = jnp.asarray(bias)
  _checks.check_floating(bias, "bias")
  _checks.check_broadcastable(bias.shape, (B, N, T, S), "bias", "[batch, heads, q_len, kv_len]")
  return bias.reshape((1,) * (4 - bias.ndim) + bias.shape)


def _as_4d(query, key, value):
  """3-D [T, N, H] inputs (as jax.nn accepts) get a batch axis of 1; returns (q, k, v, was_3d)."""
  ranks = {jnp.ndim(query), jnp.ndim(key), jnp.ndim(value)}
  if ranks == {3}:
    return query[None], key[None], value[None], True
  if ranks != {4}:
    raise ValueError(f"query, key and value must all have rank 4 ([batch, seq, heads, head_dim]) or "
                     f"all rank 3 ([seq, heads, head_dim]), got shapes {tuple(jnp.shape(query))}, "
                     f"{tuple(jnp.shape(key))}, {tuple(jnp.shape(value))}")
  return query, key, value, False


def validate_attention_args(query, key, value, mask, sinks, scale):
  """Checks 4-D shapes and dtypes; returns (B, T, N, S, K, H, scale). Raises before any compute."""
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


def _seq_lengths(lengths, B, name):
  if lengths is None:
    return None
  lengths = jnp.asarray(lengths)
  if not jnp.issubdtype(lengths.dtype, jnp.integer) or lengths.shape != (B,):
    raise ValueError(f"{name} must be an integer array of shape [batch]=({B},), got "
                     f"{lengths.dtype} {tuple(lengths.shape)}")
  return lengths


def _window(local_window_size):
  """int w -> (w, w); (left, right) non-negative ints; None stays None."""
  if local_window_size is None:
    return None
  w = local_window_size
  if isinstance(w, int) and not isinstance(w, bool):
    w = (w, w)
  if (not isinstance(w, (tuple, list)) or len(w) != 2
      or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in w)):
    raise ValueError(f"local_window_size must be a non-negative int or a (left, right) pair of them, "
                     f"got {local_window_size!r}")
  return tuple(w)


def _valid_mask(mask, causal, B, N, T, S, q_lengths=None, kv_lengths=None, window=None):
  """Boolean [B|1, N|1, T|1, S|1] mask combining `mask`, causality (top-left aligned), a local
  window (key j visible to query i iff i - left <= j <= i + right), and sequence lengths (as
  jax.nn: query i < q_len[b], key j < kv_len[b]); None when nothing masks."""
  valid = None if mask is None else _as_4d_mask(mask, B, N, T, S)

  def add(m):
    nonlocal valid
    valid = m if valid is None else jnp.logical_and(valid, m)

  t, s = jnp.arange(T)[:, None], jnp.arange(S)[None, :]
  if causal:
    add((s <= t)[None, None])
  if window is not None:
    add(((t <= s + window[0]) & (t >= s - window[1]))[None, None])
  if q_lengths is not None:
    add((jnp.arange(T)[None, :] < q_lengths[:, None])[:, None, :, None])
  if kv_lengths is not None:
    add((jnp.arange(S)[None, :] < kv_lengths[:, None])[:, None, None, :])
  return valid


def _resolve_normalizer(normalizer, sinks, N):
  norm = get_normalizer(normalizer)
  if sinks is None:
    return norm
  sinks_N1 = jnp.broadcast_to(jnp.asarray(sinks, jnp.float32), (N,))[:, None]
  return norm.with_sinks(sinks_N1)


def _deprecated_causal(causal, is_causal, fn):
  if causal is None:
    return is_causal
  warnings.warn(f"{fn}(causal=...) is deprecated; use is_causal=... (the jax.nn name)",
                DeprecationWarning, stacklevel=3)
  return bool(causal) or bool(is_causal)


def scaled_scores(q_BTNH, k_BSKH, scale):
  """[B, N, T, S] float32 scale * q . k for [B, T, N, H] queries and [B, S, K, H] keys (K divides
  N: query head n reads key head n // (N / K)); the layout every reference path shares."""
  B, T, N, H = q_BTNH.shape
  S, K = k_BSKH.shape[1], k_BSKH.shape[2]
  # Heads-major operands, transposed once: [B, K, G, T, H] . [B, K, S, H] is a plain batched
  # matmul for XLA:CPU; contracting the [B, T, K, G, H] layout directly made it copy the
  # [B, N, T, S] scores and probabilities into the dot's layout (5 % of the OPT train step on CPU).
  q_BKGTH = jnp.transpose(q_BTNH.reshape(B, T, K, N // K, H), (0, 2, 3, 1, 4))
  logits = jnp.einsum("bkgth,bksh->bkgts", q_BKGTH, jnp.transpose(k_BSKH, (0, 2, 1, 3)),
                      preferred_element_type=jnp.float32)
  return logits.reshape(B, N, T, S) * scale


def weighted_values(p_BNTS, v_BSKH):
  """[B, T, N, H] float32 sum_s p[b, n, t, s] v[b, s, n // (N / K), :]: the probabilities' P.V."""
  B, N, T, S = p_BNTS.shape
  K = v_BSKH.shape[2]
  v_BKSH = jnp.transpose(v_BSKH, (0, 2, 1, 3)).astype(jnp.float32)
  out = jnp.einsum("bkgts,bksh->bkgth", p_BNTS.reshape(B, K, N // K, T, S), v_BKSH)
  return jnp.transpose(out, (0, 3, 1, 2, 4)).reshape(B, T, N, v_BSKH.shape[-1])


def _probs(query, key, norm, bias4, valid, sinks, scale):
  """[B, N, T, S] float32 probabilities: norm(scale * q . k + bias, where=valid)."""
  norm = _resolve_normalizer(norm, sinks, query.shape[2])
  logits_BNTS = scaled_scores(query, key, scale)
  if bias4 is not None:
    logits_BNTS = logits_BNTS + bias4.astype(jnp.float32)
  return norm(logits_BNTS, axis=-1, where=valid).astype(jnp.float32)


def attention_weights(query, key, bias=None, mask=None, *, normalizer="softmax1", is_causal=False,
                      sinks=None, scale=None, query_seq_lengths=None, key_value_seq_lengths=None,
                      local_window_size=None, causal=None):
  """Attention probabilities [B, N, T, S] (float32; [N, T, S] for 3-D inputs) exactly as the
  "reference" path of `dot_product_attention` uses them (same arguments)."""
  is_causal = _deprecated_causal(causal, is_causal, "attention_weights")
  query, key, _, was_3d = _as_4d(query, key, key)
  B, T, N, S, K, H, scale = validate_attention_args(query, key, key, mask, sinks, scale)
  bias4 = None if bias is None else _as_4d_bias(bias, B, N, T, S)
  valid = _valid_mask(mask, is_causal, B, N, T, S, _seq_lengths(query_seq_lengths, B, "query_seq_lengths"),
                      _seq_lengths(key_value_seq_lengths, B, "key_value_seq_lengths"),
                      _window(local_window_size))
  p = _probs(query, key, get_normalizer(normalizer), bias4, valid, sinks, scale)
  return p[0] if was_3d else p


def _reference_attention(query, key, value, norm, bias4, valid, sinks, scale):
  p_BNTS = _probs(query, key, norm, bias4, valid, sinks, scale)
  return weighted_values(p_BNTS, value).astype(query.dtype)


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


def _check_combination(implementation, bias, mask4, window):
  """What each path supports beyond the reference: ValueError naming the path and the argument."""
  if implementation == "reference":
    return
  if bias is not None:
    raise ValueError(f"implementation {implementation!r} does not take bias=; only 'reference' "
                     "(or 'xla', or None, which picks it) adds a bias to the logits")
  if implementation in FUSED:
    if window is not None:
      raise ValueError(f"implementation {implementation!r} does not take local_window_size=; use "
                       "'reference' or 'blockwise' (or None)")
    if mask4 is not None and (mask4.shape[1] != 1 or mask4.shape[2] != 1):
      raise ValueError(f"implementation {implementation!r} takes only key-padding masks "
                       f"broadcastable to [B, 1, 1, S] (plus is_causal / sequence lengths); got mask "
                       f"of shape {tuple(mask4.shape)}: use 'reference' or 'blockwise' (or None)")


def dot_product_attention(query, key, value, bias=None, mask=None, *, scale=None, is_causal=False,
                          query_seq_lengths=None, key_value_seq_lengths=None, local_window_size=None,
                          implementation=None, normalizer="softmax1", sinks=None, block_k=None,
                          causal=None):
  """Multi-head attention with `jax.nn.dot_product_attention`'s arguments and a normalizer from the
  registry (default Softmax_1: a zero sink logit, rows sum to < 1).

  With normalizer="softmax" this equals `jax.nn.dot_product_attention` (f32 to ~1e-6) except for a
  row with no visible key: jax.nn averages all values there, this library returns 0 (a row past
  `query_seq_lengths` is 0 in both).

  Args:
    query: [B, T, N, H] (or [T, N, H]) float.
    key, value: [B, S, K, H] (or [S, K, H]) float, K divides N (grouped-query attention).
    bias: float, broadcastable to [B, N, T, S], added to the scaled logits ("reference" path only).
    mask: broadcastable to [B, N, T, S]; bool (True = attend) or numeric (non-zero = attend, so
      Flax's `make_causal_mask` output works); an additive 0 / -inf mask is refused (use `bias=`).
    scale: logit scale, default 1 / sqrt(H).
    is_causal: key j is visible to query i iff j <= i (top-left aligned, as jax.nn).
    query_seq_lengths, key_value_seq_lengths: int [B]; queries / keys at or past the length are
      padding; output rows past the query length are 0 (as jax.nn).
    local_window_size: w or (left, right): key j visible to query i iff i - left <= j <= i + right.
    implementation: "reference" (alias "xla"; XLA, materialises scores, takes every argument),
      "blockwise", "pallas", "cudnn", "splash" (see the module docstring), or None: the best for the
      platform that supports the call (`bias` -> "reference"; non key-padding masks or a local
      window -> not the fused kernels).
    normalizer: spec string or `Normalizer` ("softmax", "softmax1", "softmax_n:N", "clipped:G:Z",
      "sigmoid", "softplus", "stablemax", "softpick", ...).
    sinks: optional per-head sink logits [N] (or a scalar); overrides the normalizer's sink, so
      sinks=0 is softmax1 whatever the normalizer of the sink family. Differentiable.
    block_k: key block size of the "blockwise" (sink family: default min(256, S), queries in
      blocks of min(256, T); sigmoid / l1 kinds: min(512, S)) and fused paths (default 128).
    causal: deprecated alias of `is_causal`.
  Returns:
    [B, T, N, H] (or [T, N, H]) in query's dtype.
  """
  is_causal = _deprecated_causal(causal, is_causal, "dot_product_attention")
  query, key, value, was_3d = _as_4d(query, key, value)
  B, T, N, S, K, H, scale = validate_attention_args(query, key, value, mask, sinks, scale)
  if implementation not in IMPLEMENTATIONS:
    raise ValueError(f"implementation must be one of {IMPLEMENTATIONS}, got {implementation!r}")
  if implementation == "xla":
    implementation = "reference"
  norm = get_normalizer(normalizer)
  if sinks is not None and norm.kind != "sink":
    raise ValueError(f"sinks are only defined for the softmax/sink family, not normalizer {norm.spec!r}")
  check_implementation(norm, implementation)
  bias4 = None if bias is None else _as_4d_bias(bias, B, N, T, S)
  q_len = _seq_lengths(query_seq_lengths, B, "query_seq_lengths")
  kv_len = _seq_lengths(key_value_seq_lengths, B, "key_value_seq_lengths")
  window = _window(local_window_size)
  # Everything but causality as one boolean mask (causality stays a flag: the kernels skip blocks).
  mask4 = _valid_mask(mask, False, B, N, T, S, None, kv_len, window)
  if implementation is None:
    if bias4 is not None:
      implementation = "reference"
    else:
      implementation = select_implementation(norm, shape=(B, T, N, S, H), mask=mask4)
  _check_combination(implementation, bias4, mask4, window)
  if implementation == "reference":
    valid = _valid_mask(mask4, is_causal, B, N, T, S, q_len)
    out = _reference_attention(query, key, value, norm, bias4, valid, sinks, scale)
  else:
    out = _kernel_attention(query, key, value, norm, mask4, is_causal, sinks, scale, implementation,
                            block_k)
  if q_len is not None:  # rows past the query length are 0, as in jax.nn
    out = jnp.where((jnp.arange(T)[None, :] < q_len[:, None])[:, :, None, None], out, 0)
  return out[0] if was_3d else out


def _kernel_attention(query, key, value, norm, mask4, causal, sinks, scale, implementation, block_k):
  N = query.shape[2]
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
