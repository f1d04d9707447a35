"""Generalized sparse Hopfield (GSH) layers of STanHop (Wu, Hu et al., ICLR 2024), on `nn.hopfield`.

GSH is Hopfield association whose normalizer is alpha-entmax with a learnable alpha:
    Z = entmax_alpha(beta Q K^T) V,     alpha = 1 + sigmoid(a) in (1, 2),
one scalar a per layer, trained by gradient through the closed-form entmax backward (`ops.entmax`'s
custom_vjp returns d/d alpha). alpha -> 1 is softmax (dense modern Hopfield), alpha = 2 sparsemax;
stored patterns of low similarity get exactly zero weight. Without `learn_alpha` any fixed
normalizer of the registry works ("softmax", "softmax1", "sparsemax", "entmax:A", "clipped...").

`GSH` subclasses `Hopfield` and only overrides its `normalizer()` hook (plus an optional per-head
gate); `GSHLayer` / `GSHPooling` are `HopfieldLayer` / `HopfieldPooling` whose inner layer is a GSH.
"""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from flax import nnx

from outeffhop_jax import ops
from outeffhop_jax.nn import _init
from outeffhop_jax.nn.gates import (OUTPUT_GATES, AttentionGate, OutputGate, apply_gate,
                                    check_gate)
from outeffhop_jax.nn.hopfield import Hopfield, HopfieldLayer, HopfieldPooling
from outeffhop_jax.ops import registry

# A parameter-free inner Hopfield for the base constructors, replaced by the GSH right after:
# no projection, norm or dropout, so nothing is allocated and no RNG draw is spent on it.
_BARE = dict(num_heads=1, state_static=True, stored_static=True, projection_static=True,
             normalize_state=False, normalize_stored=False, normalize_projection=False,
             disable_out_projection=True)


@dataclasses.dataclass(frozen=True, eq=False)
class EntmaxNormalizer(ops.Normalizer):
  """alpha-entmax whose alpha is an array (traced, learnable); an `ops.Normalizer` every op accepts.

  `ops.get_normalizer` passes Normalizer instances through, so attention, `hopfield_retrieve` and
  `hopfield_energy` (kind "sparse": Tsallis energy with this alpha) all use it unchanged.
  """

  def __call__(self, x, axis: int = -1, where=None):
    dtype = jnp.asarray(x).dtype
    if where is not None:
      x, where = registry._masked_for_sparse(x, axis, where, self.alpha)  # pylint: disable=protected-access
    p = ops.entmax(x, self.alpha, axis=axis)
    if where is not None:
      p = jnp.where(where, p, 0.0)
    return p.astype(dtype)


def learned_entmax(alpha) -> EntmaxNormalizer:
  return EntmaxNormalizer("entmax:learned", "sparse", alpha=alpha)


def alpha_logit(alpha: float) -> float:
  """a with 1 + sigmoid(a) = alpha, for 1 < alpha < 2."""
  if not 1.0 < alpha < 2.0:
    raise ValueError(f"a learnable alpha starts in (1, 2) (alpha = 1 + sigmoid(a)), got {alpha}")
  return math.log((alpha - 1.0) / (2.0 - alpha))


def check_learnable(normalizer, learn_alpha: bool):
  """learn_alpha needs an "entmax:A" normalizer with 1 < A < 2 (A is alpha's initial value)."""
  norm = ops.get_normalizer(normalizer)
  if learn_alpha and (norm.kind != "sparse" or not 1.0 < norm.alpha < 2.0):
    raise ValueError(f"learn_alpha=True needs normalizer 'entmax:A' with 1 < A < 2 (the initial "
                     f"alpha), got {norm.spec!r}")
  return norm


class GSH(Hopfield):
  """Hopfield association with a learnable-alpha entmax (see module docstring).

  Args beyond `Hopfield`'s:
    normalizer: registry spec; with learn_alpha, "entmax:A" sets alpha's initial value A.
    learn_alpha: learn alpha = 1 + sigmoid(a) (a scalar Param `alpha_logit`).
    gate: "none" | "linear" | "mlp": gated attention (Bondarenko et al.) per head, conditioned on
      the head's state pattern (query) q_BTNH, since a Hopfield layer projects its raw state into
      the association space first; the gate scales Z per head before the output projection.
      "output_headwise" | "output_elementwise" (Qiu et al.): conditioned on all heads' state
      patterns q_BT(N*H) together, one gate per head / per pattern dimension of Z.
  Attributes `capture_intermediates` / `capture_attention_probs` sow "context" [B, T, N, P] and
  "attn_probs" [B, N, T, S] (float32) as nnx.Intermediate, as `MultiHeadAttention` does.
  """

  def __init__(self, input_size: int, *, normalizer="entmax:1.5", learn_alpha: bool = False,
               gate: str = "none", gate_init: float = 0.25, rngs: nnx.Rngs, **hopfield_kwargs):
    norm = check_learnable(normalizer, learn_alpha)
    check_gate(gate)
    super().__init__(input_size, normalizer=norm, rngs=rngs, **hopfield_kwargs)
    self.alpha_logit = (_init.param(rngs, nnx.initializers.constant(alpha_logit(norm.alpha)), (),
                                    (), jnp.float32) if learn_alpha else None)
    if gate in OUTPUT_GATES:
      self.gate = OutputGate(self.num_heads * self.hidden_size, self.num_heads, self.pattern_size,
                             kind=gate, pi_init=gate_init, rngs=rngs)
    else:
      self.gate = (None if gate == "none" else
                   AttentionGate(self.num_heads, self.hidden_size, kind=gate, pi_init=gate_init,
                                 param_dtype=hopfield_kwargs.get("param_dtype", jnp.float32),
                                 rngs=rngs))
    self.capture_intermediates = False
    self.capture_attention_probs = False

  @property
  def alpha(self):
    """The entmax alpha of this layer (an array if learned; None for the softmax family)."""
    if self.alpha_logit is None:
      return self.norm.alpha
    return 1.0 + jax.nn.sigmoid(self.alpha_logit[...])

  def normalizer(self):
    if self.alpha_logit is None:
      return self.norm
    return learned_entmax(self.alpha)

  def associate(self, q_BTNH, k_BSNH, v_BSNP, *, mask, deterministic):
    z_BTNP = super().associate(q_BTNH, k_BSNH, v_BSNP, mask=mask, deterministic=deterministic)
    if self.capture_attention_probs:
      norm = self.normalizer()
      p_BNTS = ops.attention_weights(self.retrieve(q_BTNH, k_BSNH, norm, mask), k_BSNH, normalizer=norm,
                                     mask=mask, scale=self.beta)
      self.sow(nnx.Intermediate, "attn_probs", p_BNTS)
    q_BTD = q_BTNH.reshape(q_BTNH.shape[:2] + (q_BTNH.shape[2] * q_BTNH.shape[3],))  # B, T may be 0
    z_BTNP = apply_gate(self.gate, q_BTD, z_BTNP)
    if self.capture_intermediates:
      self.sow(nnx.Intermediate, "context", z_BTNP)
    return z_BTNP


def _split_gsh_kwargs(kwargs):
  keys = ("normalizer", "learn_alpha", "gate", "gate_init")
  return {k: kwargs.pop(k) for k in keys if k in kwargs}, kwargs


class GSHLayer(HopfieldLayer):
  """`HopfieldLayer` (learned stored patterns, `quantity` of them) whose association is a `GSH`.

  __call__(state [B, T, input_size]) -> [B, T, output_size]. Keyword arguments: those of
  `HopfieldLayer` (quantity, lookup_*) and of `GSH` (normalizer, learn_alpha, gate, Hopfield's).
  """

  def __init__(self, input_size: int, *, quantity: int = 1, lookup_weights_as_separated: bool = False,
               lookup_targets_as_trainable: bool = True, param_dtype=jnp.float32, rngs: nnx.Rngs,
               **kwargs):
    gsh_kwargs, hopfield_kwargs = _split_gsh_kwargs(dict(kwargs))
    super().__init__(input_size, quantity=quantity,
                     lookup_weights_as_separated=lookup_weights_as_separated,
                     lookup_targets_as_trainable=lookup_targets_as_trainable,
                     param_dtype=param_dtype, rngs=rngs, **_BARE)
    self.hopfield = GSH(input_size, stored_size=input_size, values_size=input_size,
                        param_dtype=param_dtype, rngs=rngs, **gsh_kwargs, **hopfield_kwargs)


class GSHPooling(HopfieldPooling):
  """`HopfieldPooling` (`quantity` learned queries) whose association is a `GSH`.

  __call__(stored [B, S, input_size], *, values=None, mask=None) -> [B, quantity, output_size].
  """

  def __init__(self, input_size: int, *, quantity: int = 1, param_dtype=jnp.float32,
               rngs: nnx.Rngs, **kwargs):
    gsh_kwargs, hopfield_kwargs = _split_gsh_kwargs(dict(kwargs))
    super().__init__(input_size, quantity=quantity, param_dtype=param_dtype, rngs=rngs, **_BARE)
    self.hopfield = GSH(input_size, param_dtype=param_dtype, rngs=rngs, **gsh_kwargs,
                        **hopfield_kwargs)
