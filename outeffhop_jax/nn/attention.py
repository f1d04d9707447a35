"""Multi-head attention with a pluggable normalizer, optional gate and sink logits, and GQA.

    q_BTNH = x W_q,  k_BSKH = c W_k,  v_BSKH = c W_v          (c = x for self-attention)
    ctx_BTNH = ops.dot_product_attention(q, k, v, normalizer, mask, causal, sinks)
    ctx_BTNH *= sigmoid(G(x_BTNH))        (gate "linear" / "mlp", Bondarenko et al., optional)
    ctx_BTNH *= sigmoid(x_BTD W_g + b)    (gate "output_headwise" / "output_elementwise", Qiu et al.)
    y_BTD = ctx W_o
The math lives in `outeffhop_jax.ops`; this module only owns parameters, the gate and dropout.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable

import jax.numpy as jnp
from flax import nnx

from outeffhop_jax import ops
from outeffhop_jax.nn import _init
from outeffhop_jax.ops import _checks
from outeffhop_jax.ops.attention import scaled_scores, weighted_values
from outeffhop_jax.nn.gates import HEAD_GATES, apply_gate, check_gate, make_gate
from outeffhop_jax.nn.projections import HeadsIn, HeadsOut


def parse_sinks(sinks):
  """"none" -> None, "learned" -> "learned", a finite number (or its string) -> float; else
  ValueError (a NaN or infinite fixed sink would make every probability NaN or 0)."""
  if sinks is None or sinks == "none":
    return None
  if sinks == "learned":
    return "learned"
  try:
    value = float(sinks)
  except (TypeError, ValueError):
    raise ValueError(f"sinks must be 'none', 'learned' or a number (a fixed sink logit), "
                     f"got {sinks!r}") from None
  if not math.isfinite(value):
    raise ValueError(f"sinks must be 'none', 'learned' or a finite number (a fixed sink logit), "
                     f"got {sinks!r}")
  return value


@dataclasses.dataclass(frozen=True)
class AttentionHooks:
  """Callables that observe or replace intermediate tensors of `MultiHeadAttention` (None = identity).

    scores(s_BNTS, where=valid)   scaled logits q.k / sqrt(H), float32 [B, N, T, S], before the normalizer
    probs(p_BNTS, where=valid)    normalizer output, float32 [B, N, T, S]
    context(ctx_BTNH)             P.V context after the gate, the output projection's input
  `valid` is the boolean [B|1, N|1, T, S] mask (mask and causality combined) or None. With hooks the
  layer takes the "reference" path and forms the probabilities (used by fake quantization).
  """
  scores: Callable | None = None
  probs: Callable | None = None
  context: Callable | None = None


def _valid_mask(mask, causal: bool, T: int, S: int):
  valid = None if mask is None else jnp.asarray(mask, bool)
  if causal:
    causal_TS = jnp.arange(S)[None, :] <= jnp.arange(T)[:, None]
    valid = causal_TS if valid is None else jnp.logical_and(valid, causal_TS)
  return valid


def check_input(x, name: str, rank: int, layout: str, last_dim: int | None = None):
  """Raises ValueError naming `name` unless x has `rank` (and last dimension `last_dim`)."""
  shape = tuple(getattr(x, "shape", ()))
  if len(shape) != rank:
    raise ValueError(f"{name} must have rank {rank} ({layout}), got shape {shape}")
  if last_dim is not None and shape[-1] != last_dim:
    raise ValueError(f"{name} must have last dimension {last_dim} ({layout}), got shape {shape}")


def check_mask(mask, target, name: str = "mask"):
  """The mask as a boolean array broadcastable to `target` = (B, N, T, S) (None stays None).

  The library's one mask rule (`ops._checks.as_bool_mask`): boolean, or numeric with non-zero =
  attend (Flax's rule, so `nnx.make_attention_mask` output works); a concrete additive 0 / -inf
  mask is refused with how to convert it. Raises before any compute.
  """
  if mask is None:
    return None
  mask = _checks.as_bool_mask(mask, name)
  shape = tuple(mask.shape)
  ok = len(shape) <= 4 and all(s in (1, t) for s, t in zip(shape[::-1], target[::-1]))
  if not ok:
    raise ValueError(f"{name} of shape {shape} is not broadcastable to [batch, heads, q_len, kv_len] "
                     f"= {tuple(target)}")
  return mask


def check_sizes(**sizes):
  """Each keyword (a layer size: heads, widths, counts) must be an int > 0; ValueError naming it."""
  for name, value in sizes.items():
    _checks.check_size(value, name)


class MultiHeadAttention(nnx.Module):
  """Multi-head (or grouped-query) attention; see the module docstring for the formula.

  Args:
    d_model: width D of the input x_BTD and of the output.
    num_heads: N query heads. head_dim: H (default D // N). num_kv_heads: K, dividing N (default N).
    d_context: width of the cross-attention context c_BSD (default D).
    normalizer: spec or `ops.Normalizer` ("softmax", "softmax1", "clipped:-0.03:1", ...).
    gate: "none", "linear" or "mlp" (per-head slices of x: needs D == N * H), "output_headwise" or
      "output_elementwise" (of all of x); gate_init: the initial probability pi_init (see `nn.gates`).
    sinks: "none", a fixed sink logit (float; 0.0 is softmax1), or "learned" (one per head, init 0).
      Only for the softmax/sink family of normalizers.
    implementation: passed to `ops.dot_product_attention` ("reference", "blockwise", None, ...).
    dropout_rate: dropout on the attention probabilities (then the "reference" weights are used).
    dtype: compute dtype (None = the input's); param_dtype: parameter dtype.
  Attributes `capture_intermediates` / `capture_attention_probs` switch on sowing (nnx.Intermediate)
  of "context" [B, T, N, H] (pre-projection, after the gate) and "attn_probs" [B, N, T, S] (float32).
  """

  def __init__(self, d_model: int, num_heads: int, *, head_dim: int | None = None,
               num_kv_heads: int | None = None, d_context: int | None = None,
               normalizer="softmax1", gate: str = "none", gate_init: float = 0.25, sinks="none",
               implementation="reference", dropout_rate: float = 0.0, use_bias: bool = True,
               kernel_init=None, out_kernel_init=None, dtype=None, param_dtype=jnp.float32,
               rngs: nnx.Rngs):
    check_sizes(d_model=d_model, num_heads=num_heads)
    head_dim = d_model // num_heads if head_dim is None else head_dim
    num_kv_heads = num_heads if num_kv_heads is None else num_kv_heads
    check_sizes(head_dim=head_dim, num_kv_heads=num_kv_heads)
    if d_context is not None:
      check_sizes(d_context=d_context)
    if num_heads % num_kv_heads:
      raise ValueError(f"num_heads ({num_heads}) must be a multiple of num_kv_heads ({num_kv_heads})")
    self.norm = ops.get_normalizer(normalizer)  # ValueError on an unknown spec
    check_gate(gate)
    sink_spec = parse_sinks(sinks)
    if sink_spec is not None and self.norm.kind != "sink":
      raise ValueError(f"sinks={sinks!r} needs a softmax-family normalizer, got {self.norm.spec!r}")
    if gate in HEAD_GATES and d_model != num_heads * head_dim:
      raise ValueError(f"gate={gate!r} cuts the input into head-sized slices and needs d_model "
                       f"({d_model}) == num_heads * head_dim ({num_heads} * {head_dim})")
    if implementation not in ops.attention.IMPLEMENTATIONS:
      raise ValueError(f"implementation must be one of {ops.attention.IMPLEMENTATIONS}, "
                       f"got {implementation!r}")
    ops.attention.check_implementation(self.norm, implementation)  # fused paths: sink family only
    if not 0.0 <= dropout_rate < 1.0:
      raise ValueError(f"dropout_rate must be in [0, 1), got {dropout_rate}")
    self.d_model, self.num_heads, self.head_dim = d_model, num_heads, head_dim
    self.num_kv_heads, self.d_context = num_kv_heads, d_context or d_model
    self.implementation = implementation
    self.dtype = _init.as_dtype(dtype)
    param_dtype = _init.as_dtype(param_dtype)
    kw = dict(use_bias=use_bias, dtype=self.dtype, param_dtype=param_dtype, rngs=rngs)
    self.query = HeadsIn(d_model, num_heads, head_dim, kernel_init=kernel_init, **kw)
    self.key = HeadsIn(self.d_context, num_kv_heads, head_dim, kernel_init=kernel_init, **kw)
    self.value = HeadsIn(self.d_context, num_kv_heads, head_dim, kernel_init=kernel_init, **kw)
    self.out = HeadsOut(num_heads, head_dim, d_model, kernel_init=out_kernel_init or kernel_init,
                        **kw)
    self.gate = make_gate(gate, d_model=d_model, num_heads=num_heads, head_dim=head_dim,
                          pi_init=gate_init, param_dtype=param_dtype, rngs=rngs)
    self.sinks = (_init.param(rngs, _init.zeros, (num_heads,), ("heads",), jnp.float32)
                  if sink_spec == "learned" else None)
    self.fixed_sink = None if sink_spec == "learned" else sink_spec  # None or a float
    self.dropout = nnx.Dropout(dropout_rate, rngs=rngs) if dropout_rate > 0 else None
    self.capture_intermediates = False
    self.capture_attention_probs = False

  def _sinks_N(self):
    if self.sinks is not None:
      return self.sinks[...]
    if self.fixed_sink is not None:
      return jnp.full((self.num_heads,), self.fixed_sink, jnp.float32)
    return None

  def _attend(self, q_BTNH, k_BSKH, v_BSKH, kw, deterministic):
    use_dropout = self.dropout is not None and not deterministic
    if use_dropout or self.capture_attention_probs:
      p_BNTS = ops.attention_weights(q_BTNH, k_BSKH, **kw)
      if self.capture_attention_probs:
        self.sow(nnx.Intermediate, "attn_probs", p_BNTS)
    if not use_dropout:
      return ops.dot_product_attention(q_BTNH, k_BSKH, v_BSKH, implementation=self.implementation,
                                       **kw)
    # Dropout acts on the probabilities, so the fused paths (which never form them) cannot be used.
    B, T = q_BTNH.shape[:2]
    p_BNTS = self.dropout(p_BNTS, deterministic=False)
    K = self.num_kv_heads
    p_BKGTS = p_BNTS.reshape(B, K, self.num_heads // K, T, -1)
    v_BKSH = jnp.transpose(v_BSKH, (0, 2, 1, 3))
    ctx = jnp.transpose(jnp.einsum("bkgts,bksh->bkgth", p_BKGTS.astype(v_BSKH.dtype), v_BKSH),
                        (0, 3, 1, 2, 4))
    return ctx.reshape(B, T, self.num_heads, self.head_dim)

  def __call__(self, x_BTD, *, context_BSD=None, mask=None, causal: bool = False,
               deterministic: bool = True, hooks: AttentionHooks | None = None):
    """x_BTD [B, T, D] -> [B, T, D]. mask: broadcastable to [B, N, T, S], boolean (True = attend)
    or 0/1 (non-zero = attend); an additive 0 / -inf mask is refused. B, T or S = 0 give an empty
    result (S = 0: no key to attend to, context 0, output = the output projection's bias).

    context_BSD: keys/values source for cross-attention (default x_BTD). causal: key j <= query i.
    hooks: `AttentionHooks` on the scores, probabilities and context (None: no hooks).
    """
    check_input(x_BTD, "x_BTD", 3, "[batch, seq, d_model]", self.d_model)
    c_BSD = x_BTD if context_BSD is None else context_BSD
    check_input(c_BSD, "context_BSD", 3, "[batch, kv_seq, d_context]", self.d_context)
    if c_BSD.shape[0] != x_BTD.shape[0]:
      raise ValueError(f"context_BSD batch {c_BSD.shape[0]} must equal x_BTD batch {x_BTD.shape[0]}")
    B, T, _ = x_BTD.shape
    S = c_BSD.shape[1]
    mask = check_mask(mask, (B, self.num_heads, T, S))

    q_BTNH, k_BSKH, v_BSKH = self.query(x_BTD), self.key(c_BSD), self.value(c_BSD)
    sinks_N = self._sinks_N()
    kw = dict(normalizer=self.norm, mask=mask, is_causal=causal, sinks=sinks_N)
    if hooks is not None and B * T * S:
      use_dropout = self.dropout is not None and not deterministic
      return self._hooked(x_BTD, q_BTNH, k_BSKH, v_BSKH, mask, causal, sinks_N, hooks, use_dropout)
    if B * T * S == 0:
      # Empty batch / queries: an empty result. No keys (S = 0): each row is a row over 0 keys,
      # which, like a fully masked row, has no probability mass, so its context is 0.
      ctx_BTNH = jnp.zeros((B, T, self.num_heads, self.head_dim), q_BTNH.dtype)
      if self.capture_attention_probs:
        self.sow(nnx.Intermediate, "attn_probs", jnp.zeros((B, self.num_heads, T, S), jnp.float32))
    else:
      ctx_BTNH = self._attend(q_BTNH, k_BSKH, v_BSKH, kw, deterministic)
    ctx_BTNH = apply_gate(self.gate, x_BTD, ctx_BTNH)
    if self.capture_intermediates:
      self.sow(nnx.Intermediate, "context", ctx_BTNH)
    return self.out(ctx_BTNH)


  def _hooked(self, x_BTD, q_BTNH, k_BSKH, v_BSKH, mask, causal, sinks_N, hooks, use_dropout):
    """The "reference" forward with `hooks` between its steps: the scores and P.V of
    `ops.attention` (`scaled_scores`, `weighted_values`), so both paths give the same bits."""
    _, T, N, H = q_BTNH.shape
    S = k_BSKH.shape[1]
    s_BNTS = scaled_scores(q_BTNH, k_BSKH, 1.0 / math.sqrt(H))
    valid = _valid_mask(mask, causal, T, S)
    if hooks.scores is not None:
      s_BNTS = hooks.scores(s_BNTS, where=valid)
    norm = self.norm if sinks_N is None else self.norm.with_sinks(
        jnp.broadcast_to(jnp.asarray(sinks_N, jnp.float32), (N,))[:, None])
    p_BNTS = norm(s_BNTS, axis=-1, where=valid).astype(jnp.float32)
    if hooks.probs is not None:
      p_BNTS = hooks.probs(p_BNTS, where=valid)
    if self.capture_attention_probs:
      self.sow(nnx.Intermediate, "attn_probs", p_BNTS)
    if use_dropout:
      p_BNTS = self.dropout(p_BNTS, deterministic=False)
    ctx = weighted_values(p_BNTS, v_BSKH)
    ctx_BTNH = apply_gate(self.gate, x_BTD, ctx.astype(q_BTNH.dtype))
    if hooks.context is not None:
      ctx_BTNH = hooks.context(ctx_BTNH)
    if self.capture_intermediates:
      self.sow(nnx.Intermediate, "context", ctx_BTNH)
    return self.out(ctx_BTNH)
