"""Modern Hopfield layers (the ml-jku hopfield-layers API in Flax NNX), OutEffHop by default.

Per head n, with state patterns R (queries), stored patterns Y (memories) and pattern projections V:
    Q = LN(R) W_Q,  K = LN(Y) W_K,  V = LN(V) W_V       ("static" switches drop a projection)
    Q <- Hopfield retrieval of Q in the memories K, `update_steps_max` CCCP steps
         Q' = K^T normalizer(beta K Q)  (ops.hopfield_retrieve; stops per row below update_steps_eps)
    Z = normalizer(beta Q K^T) V                          (ops.dot_product_attention, scale = beta)
    out = Z W_O
The default normalizer "softmax1" makes this the Outlier-Efficient Hopfield layer (OutEffHop); any
`ops.get_normalizer` spec works ("softmax" is the layer of Ramsauer et al.). `update_steps_max=0`
is one association step, i.e. plain attention with scale beta. Calls are keyword-only
(`state=`, `stored=`, `values=`): there is no positional (stored, state, values) tuple to get wrong.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from outeffhop_jax import ops
from outeffhop_jax.nn import _init
from outeffhop_jax.nn.attention import check_input, check_mask, check_sizes
from outeffhop_jax.nn.projections import HeadsIn, HeadsOut


def _layer_norm(dim, enabled, affine, param_dtype, rngs):
  if not enabled:
    return None
  return nnx.LayerNorm(dim, use_bias=affine, use_scale=affine, param_dtype=param_dtype,
                       scale_init=_init.partitioned(_init.ones, ("embed",)),
                       bias_init=_init.partitioned(_init.zeros, ("embed",)), rngs=rngs)


class _Projection(nnx.Module):
  """Optional LayerNorm, then a head-split projection [B, T, D] -> [B, T, N, H] (or a reshape)."""

  def __init__(self, d_in, num_heads, head_dim, *, static, normalize, affine, use_bias, dtype,
               param_dtype, name, rngs):
    if static and d_in != num_heads * head_dim:
      raise ValueError(f"{name}_static=True keeps the raw {name} patterns, so their size ({d_in}) must "
                       f"equal num_heads * head size ({num_heads} * {head_dim})")
    self.norm = _layer_norm(d_in, normalize, affine, param_dtype, rngs)
    self.proj = None if static else HeadsIn(d_in, num_heads, head_dim, use_bias=use_bias,
                                            dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.num_heads, self.head_dim = num_heads, head_dim

  def __call__(self, x_BTD):
    if self.norm is not None:
      x_BTD = self.norm(x_BTD)
    if self.proj is None:
      return x_BTD.reshape(x_BTD.shape[:2] + (self.num_heads, self.head_dim))
    return self.proj(x_BTD)


class Hopfield(nnx.Module):
  """Hopfield association of state patterns with stored patterns (see module docstring).

  Args (sizes; defaults follow hopfield-layers):
    input_size: size of the state patterns (queries) R [B, T, input_size].
    stored_size: size of the stored patterns Y (default input_size).
    values_size: size of the pattern projections V (default stored_size; V defaults to Y).
    hidden_size: per-head size of the association space (default input_size // num_heads).
    pattern_size: per-head size of the projected values (default hidden_size).
    output_size: output width (default input_size); ignored with disable_out_projection.
    num_heads: heads N.
    beta: inverse temperature (default 1 / sqrt(hidden_size)), the logit scale.
    update_steps_max: CCCP steps refining the queries before the final association (0 = attention).
    update_steps_eps: a query row stops updating once a step moves it by less than this (L2).
    normalize_{stored,state,projection}[_affine]: LayerNorm on the raw patterns (with scale/bias).
    {stored,state,projection}_static: no projection (raw patterns cut into heads).
    disable_out_projection: return the concatenated heads [B, T, N * pattern_size].
    normalizer: spec or `ops.Normalizer` (default "softmax1", OutEffHop).
    dropout_rate: dropout on the association probabilities.
    implementation: passed to `ops.dot_product_attention`.
  """

  def __init__(self, input_size: int, *, stored_size: int | None = None,
               values_size: int | None = None, hidden_size: int | None = None,
               pattern_size: int | None = None, output_size: int | None = None, num_heads: int = 1,
               beta: float | None = None, update_steps_max: int = 0, update_steps_eps: float = 1e-4,
               normalize_stored: bool = True, normalize_stored_affine: bool = True,
               normalize_state: bool = True, normalize_state_affine: bool = True,
               normalize_projection: bool = True, normalize_projection_affine: bool = True,
               stored_static: bool = False, state_static: bool = False,
               projection_static: bool = False, disable_out_projection: bool = False,
               normalizer="softmax1", dropout_rate: float = 0.0, use_bias: bool = True,
               implementation="reference", dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    check_sizes(input_size=input_size, num_heads=num_heads)
    # `is None`, not `or`: an explicit 0 is a mistake to report, not a request for the default.
    stored_size = input_size if stored_size is None else stored_size
    values_size = stored_size if values_size is None else values_size
    if hidden_size is None and input_size < num_heads:
      raise ValueError(f"hidden_size defaults to input_size // num_heads = {input_size} // "
                       f"{num_heads} = 0; pass hidden_size or fewer heads")
    hidden_size = input_size // num_heads if hidden_size is None else hidden_size
    pattern_size = hidden_size if pattern_size is None else pattern_size
    check_sizes(stored_size=stored_size, values_size=values_size, hidden_size=hidden_size,
                pattern_size=pattern_size)
    if output_size is not None:
      check_sizes(output_size=output_size)
    if not isinstance(update_steps_max, int) or update_steps_max < 0:
      raise ValueError(f"update_steps_max must be a non-negative int, got {update_steps_max!r}")
    if not update_steps_eps >= 0:
      raise ValueError(f"update_steps_eps must be >= 0, got {update_steps_eps}")
    if beta is not None and not 0 < beta < math.inf:
      raise ValueError(f"beta must be finite and > 0, got {beta}")
    if not 0.0 <= dropout_rate < 1.0:
      raise ValueError(f"dropout_rate must be in [0, 1), got {dropout_rate}")
    self.norm = ops.get_normalizer(normalizer)
    self.input_size, self.stored_size, self.values_size = input_size, stored_size, values_size
    self.num_heads, self.hidden_size, self.pattern_size = num_heads, hidden_size, pattern_size
    self.beta = float(beta) if beta is not None else 1.0 / math.sqrt(hidden_size)
    self.update_steps_max, self.update_steps_eps = update_steps_max, float(update_steps_eps)
    self.implementation = implementation
    dtype, param_dtype = _init.as_dtype(dtype), _init.as_dtype(param_dtype)
    kw = dict(use_bias=use_bias, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.state_proj = _Projection(input_size, num_heads, hidden_size, static=state_static,
                                  normalize=normalize_state, affine=normalize_state_affine,
                                  name="state", **kw)
    self.stored_proj = _Projection(stored_size, num_heads, hidden_size, static=stored_static,
                                   normalize=normalize_stored, affine=normalize_stored_affine,
                                   name="stored", **kw)
    self.values_proj = _Projection(values_size, num_heads, pattern_size, static=projection_static,
                                   normalize=normalize_projection,
                                   affine=normalize_projection_affine, name="projection", **kw)
    self.output_size = num_heads * pattern_size if disable_out_projection else (
        output_size or input_size)
    self.out = None if disable_out_projection else HeadsOut(num_heads, pattern_size,
                                                            self.output_size, **kw)
    self.dropout = nnx.Dropout(dropout_rate, rngs=rngs) if dropout_rate > 0 else None

  def normalizer(self):
    """The normalizer of this call; a subclass with a learnable normalizer overrides this."""
    return self.norm

  def retrieve(self, q_BTNH, k_BSNH, norm, mask=None):
    """`update_steps_max` CCCP steps of each query in its (batch, head) memories, one vmap.

    mask: optional boolean, broadcastable to [B, N, T, S]: the memories each query may retrieve."""
    if self.update_steps_max == 0:
      return q_BTNH
    B, T, N, _ = q_BTNH.shape
    S = k_BSNH.shape[1]
    retrieve = lambda q_TH, k_SH, m_TS: ops.hopfield_retrieve(
        q_TH, k_SH, beta=self.beta, normalizer=norm, max_steps=self.update_steps_max,
        tol=self.update_steps_eps, mask=m_TS)
    if mask is None:
      mask_BNTS = jnp.ones((B, N, T, S), bool)
    else:
      mask = jnp.asarray(mask)
      mask_BNTS = jnp.broadcast_to(mask.reshape((1,) * (4 - mask.ndim) + mask.shape), (B, N, T, S))
    per_head = jax.vmap(retrieve, in_axes=(1, 1, 0), out_axes=1)  # over N: [T,N,H], [S,N,H], [N,T,S]
    return jax.vmap(per_head)(q_BTNH, k_BSNH, mask_BNTS)           # over B

  def associate(self, q_BTNH, k_BSNH, v_BSNP, *, mask, deterministic):
    """Z_BTNP = normalizer(beta Q K^T) V after the retrieval steps."""
    B, T, N = q_BTNH.shape[:3]
    if B * T * k_BSNH.shape[1] == 0:
      # Empty batch / states: empty result. No stored pattern: nothing to associate with (a row
      # over 0 memories has no mass, as a fully masked row), so Z = 0.
      return jnp.zeros((B, T, N, v_BSNP.shape[-1]), v_BSNP.dtype)
    norm = self.normalizer()
    q_BTNH = self.retrieve(q_BTNH, k_BSNH, norm, mask)
    if self.dropout is None or deterministic:
      return ops.dot_product_attention(q_BTNH, k_BSNH, v_BSNP, normalizer=norm, mask=mask,
                                       scale=self.beta, implementation=self.implementation)
    p_BNTS = ops.attention_weights(q_BTNH, k_BSNH, normalizer=norm, mask=mask, scale=self.beta)
    p_BNTS = self.dropout(p_BNTS, deterministic=False)
    return jnp.einsum("bnts,bsnp->btnp", p_BNTS.astype(v_BSNP.dtype), v_BSNP)

  def __call__(self, *, state, stored, values=None, mask=None, deterministic: bool = True):
    """Keyword-only. state [B, T, input_size], stored [B, S, stored_size],
    values [B, S, values_size] (default: stored); mask broadcastable to [B, N, T, S], boolean
    (True = may associate) or 0/1 (an additive 0 / -inf mask is refused). Returns
    [B, T, output_size]; empty for B = 0 or T = 0; with S = 0 (no stored pattern) Z = 0."""
    check_input(state, "state", 3, "[batch, num_state, input_size]", self.input_size)
    check_input(stored, "stored", 3, "[batch, num_stored, stored_size]", self.stored_size)
    values = stored if values is None else values
    check_input(values, "values", 3, "[batch, num_stored, values_size]", self.values_size)
    if not state.shape[0] == stored.shape[0] == values.shape[0]:
      raise ValueError(f"state, stored and values must share the batch size, got {state.shape[0]}, "
                       f"{stored.shape[0]}, {values.shape[0]}")
    if values.shape[1] != stored.shape[1]:
      raise ValueError(f"values must have one row per stored pattern ({stored.shape[1]}), "
                       f"got shape {tuple(values.shape)}")
    mask = check_mask(mask, (state.shape[0], self.num_heads, state.shape[1], stored.shape[1]))
    z_BTNP = self.associate(self.state_proj(state), self.stored_proj(stored),
                            self.values_proj(values), mask=mask, deterministic=deterministic)
    if self.out is None:
      return z_BTNP.reshape(z_BTNP.shape[:2] + (-1,))
    return self.out(z_BTNP)


class FrozenTarget(nnx.Variable):
  """A non-trainable stored value (HopfieldLayer with lookup_targets_as_trainable=False)."""


class HopfieldLayer(nnx.Module):
  """Hopfield association of the input with `quantity` learned stored patterns (a learned memory).

  `lookup_weights_as_separated`: learn separate values (pattern projections) instead of reusing the
  stored patterns; `lookup_targets_as_trainable=False` freezes those values. Other keyword arguments
  go to `Hopfield`. __call__(state [B, T, input_size]) -> [B, T, output_size].
  """

  def __init__(self, input_size: int, *, quantity: int = 1, lookup_weights_as_separated: bool = False,
               lookup_targets_as_trainable: bool = True, param_dtype=jnp.float32, rngs: nnx.Rngs,
               **hopfield_kwargs):
    check_sizes(input_size=input_size, quantity=quantity)
    init = _init.normal(1.0 / math.sqrt(input_size))
    self.stored = _init.param(rngs, init, (quantity, input_size), (None, "embed"), param_dtype)
    values = None
    if lookup_weights_as_separated:
      values = _init.param(rngs, init, (quantity, input_size), (None, "embed"), param_dtype)
      if not lookup_targets_as_trainable:
        # Not an nnx.Param: optimizers and gradients over nnx.Param leave frozen targets alone.
        values = FrozenTarget(values.get_value())
    self.values = values
    self.hopfield = Hopfield(input_size, stored_size=input_size, values_size=input_size,
                             param_dtype=param_dtype, rngs=rngs, **hopfield_kwargs)

  def __call__(self, state, *, mask=None, deterministic: bool = True):
    check_input(state, "state", 3, "[batch, seq, input_size]", self.stored.shape[-1])
    B = state.shape[0]
    stored = jnp.broadcast_to(self.stored[...], (B,) + self.stored.shape)
    values = None if self.values is None else jnp.broadcast_to(self.values[...], stored.shape)
    return self.hopfield(state=state, stored=stored.astype(state.dtype),
                         values=None if values is None else values.astype(state.dtype), mask=mask,
                         deterministic=deterministic)


class HopfieldPooling(nnx.Module):
  """Pools a set of patterns with `quantity` learned state patterns (queries).

  __call__(stored [B, S, input_size], *, values=None, mask=None) -> [B, quantity, output_size]
  (hopfield-layers flattens this to [B, quantity * output_size]; reshape if you want that).
  mask: boolean key-padding mask [B, S] (True = real pattern) or anything broadcastable to
  [B, N, quantity, S]. Other keyword arguments go to `Hopfield`.
  """

  def __init__(self, input_size: int, *, quantity: int = 1, param_dtype=jnp.float32,
               rngs: nnx.Rngs, **hopfield_kwargs):
    check_sizes(input_size=input_size, quantity=quantity)
    init = _init.normal(1.0 / math.sqrt(input_size))
    self.queries = _init.param(rngs, init, (quantity, input_size), (None, "embed"), param_dtype)
    self.hopfield = Hopfield(input_size, param_dtype=param_dtype, rngs=rngs, **hopfield_kwargs)

  def __call__(self, stored, *, values=None, mask=None, deterministic: bool = True):
    check_input(stored, "stored", 3, "[batch, seq, input_size]", self.hopfield.stored_size)
    B = stored.shape[0]
    if mask is not None and jnp.ndim(mask) == 2:
      mask = mask[:, None, None, :]  # key padding [B, S] -> [B, 1, 1, S]
    state = jnp.broadcast_to(self.queries[...], (B,) + self.queries.shape).astype(stored.dtype)
    return self.hopfield(state=state, stored=stored, values=values, mask=mask,
                         deterministic=deterministic)
