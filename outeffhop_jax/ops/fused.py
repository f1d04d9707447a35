"""The fused attention paths behind `dot_product_attention`: Pallas flash, TPU splash and cuDNN.

All three take the sink family only (softmax, softmax1, softmax_n, learned sinks) and a mask that is
a key-padding mask (broadcastable to [B, 1, 1, S]) combined with `causal`; they pad sequences to
their block sizes and mark padded keys with a segment id no query has.

"cudnn" appends one zero key and one zero value per kv head: its logit is q . 0 = 0, so with a bias
of `sink` on that column softmax over S + 1 keys equals the sink softmax over S keys, and the zero
value adds nothing to the output. That is exact for fixed sinks; `jax.nn.dot_product_attention`
runs it with cuDNN on GPU and with XLA elsewhere.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def key_padding(mask, B, S):
  """A mask broadcastable to [B, 1, 1, S] as boolean [B, S] (None stays None); else ValueError."""
  if mask is None:
    return None
  if mask.shape[1] != 1 or mask.shape[2] != 1:
    raise ValueError(f"fused attention paths take key-padding masks broadcastable to [B, 1, 1, S] "
                     f"(plus causal=True); got mask of shape {tuple(mask.shape)}: use "
                     "implementation='blockwise' or 'reference' for general masks")
  return jnp.broadcast_to(mask[:, 0, 0, :], (B, S))


def _next_pow2(n):
  return 1 << max(n - 1, 0).bit_length()


def _block_and_padded(seq, block, backend):
  """Block size and padded length for one sequence axis."""
  if seq >= block or backend == "tpu":
    return block, -(-seq // block) * block
  b = min(block, max(16, _next_pow2(seq)))  # Triton wants powers of two >= 16
  return b, b


def _pad_seq(x, length):
  return jnp.pad(x, [(0, 0), (0, length - x.shape[1])] + [(0, 0)] * (x.ndim - 2))


def _segments(pad_BS, B, T_pad, S, S_pad):
  """Query ids 1; kv ids 1 for real keys, 0 for masked and padded keys."""
  kv = jnp.ones((B, S), jnp.int32) if pad_BS is None else pad_BS.astype(jnp.int32)
  return jnp.ones((B, T_pad), jnp.int32), _pad_seq(kv, S_pad)


def pallas_attention(query, key, value, sinks_N, *, mask, causal, scale, block_q=128, block_k=128,
                     splash=False):
  """Flash (or splash) kernel; sinks_N [N] float32 or None (plain softmax)."""
  from outeffhop_jax import kernels  # a leaf; imported lazily so ops never pays for Pallas

  B, T, N, _ = query.shape
  S = key.shape[1]
  pad_BS = key_padding(mask, B, S)
  backend = "tpu" if splash or jax.default_backend() != "gpu" else "triton"
  bq, T_pad = _block_and_padded(T, block_q, backend)
  bk, S_pad = _block_and_padded(S, block_k, backend)
  needs_segments = pad_BS is not None or S_pad != S
  q_ids, kv_ids = _segments(pad_BS, B, T_pad, S, S_pad) if needs_segments else (None, None)
  fn = kernels.splash_attention if splash else kernels.flash_attention
  kw = {} if splash else {"backend": backend}
  out = fn(_pad_seq(query, T_pad), _pad_seq(key, S_pad), _pad_seq(value, S_pad), sinks=sinks_N,
           causal=causal, q_segment_ids=q_ids, kv_segment_ids=kv_ids, scale=scale, block_q=bq,
           block_k=bk, **kw)
  return out[:, :T]


def cudnn_attention(query, key, value, sink_N, *, mask, causal, scale):
  """`jax.nn.dot_product_attention` over S + 1 keys, the last a zero key/value carrying the sink.

  sink_N: [N] float32 sink logits, or None for plain softmax (then no extra key).
  """
  B, T, N, H = query.shape
  S, K = key.shape[1], key.shape[2]
  pad_BS = key_padding(mask, B, S)
  impl = "cudnn" if jax.default_backend() == "gpu" else None
  if sink_N is None:
    pad_mask = None if pad_BS is None else pad_BS[:, None, None, :]
    return jax.nn.dot_product_attention(query, key, value, mask=pad_mask, scale=scale,
                                        is_causal=causal, implementation=impl)
  zeros = jnp.zeros((B, 1, K, H), key.dtype)
  key1 = jnp.concatenate([key, zeros], axis=1)
  value1 = jnp.concatenate([value, jnp.zeros((B, 1, K, value.shape[-1]), value.dtype)], axis=1)
  valid = jnp.ones((B, 1, T, S), bool)
  if pad_BS is not None:
    valid = valid & pad_BS[:, None, None, :]
  if causal:
    valid = valid & (jnp.arange(S)[None, :] <= jnp.arange(T)[:, None])
  valid = jnp.concatenate([valid, jnp.ones((B, 1, T, 1), bool)], axis=-1)
  bias = jnp.zeros((1, N, 1, S + 1), jnp.float32).at[..., -1].set(sink_N[None, :, None])
  return jax.nn.dot_product_attention(query, key1, value1, bias=bias.astype(query.dtype), mask=valid,
                                      scale=scale, implementation=impl)
