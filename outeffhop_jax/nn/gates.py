"""Attention gates: per token and per head, sigmoid gates on the attention context before W_o.

Bondarenko et al., "Quantizable Transformers", 2023 -- gates of per-head slices of the input:
    out_BTNH = sigmoid(G_n(x_BTNH)) * attn_BTNH
x_BTNH is the attention *input* hidden state x_BTD cut into N head-sized slices (D = N * H).
  "linear":  G_n(x) = <w_n, x> + b_n                       weights [N, H], bias [N]
  "mlp":     G_n(x) = <w2_n, relu(W1_n x + b1_n)> + b2_n   W1 [N, H, H/4], w2 [N, H/4]
Qiu et al., "Gated Attention for Large Language Models: Non-linearity, Sparsity, and
Attention-Sink-Free", 2025 -- gates of the whole input, on the SDPA output Y_BTNH:
    Y'_BTNH = Y_BTNH * sigmoid(x_BTD W_g + b)
x_BTD is the tensor that feeds Q/K/V (after the pre-norm in pre-norm models).
  "output_headwise":     W_g [D, N],    b [N]      one gate per head and token
  "output_elementwise":  W_g [D, N, H], b [N, H]   one gate per head dimension and token
All heads are computed by one einsum over head-stacked weights (no per-head loop).

Initialisation, the same rule for every gate: the output bias starts at logit(pi_init), so a gate
is exactly pi_init (`gate_init`, 0.25 for OPT/ViT) where its input is 0 and sigmoid of a logit
centred on logit(pi_init) elsewhere; the weights are N(0, 1/fan_in) (std 1/sqrt(H) for the head
gates, 1/sqrt(D) for the output gates), so the logit's spread is about the input's rms. The output
gates keep float32 parameters whatever the model's param_dtype (as the learned sinks do) and, like
the head gates, compute in float32; W8A8 keeps every gate in float.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from outeffhop_jax.nn import _init
from outeffhop_jax.ops import _checks

HEAD_GATES = ("linear", "mlp")  # Bondarenko et al.: per-head slices of x
OUTPUT_GATES = ("output_headwise", "output_elementwise")  # Qiu et al.: all of x
GATES = ("none",) + HEAD_GATES + OUTPUT_GATES


def check_gate(gate) -> str:
  if gate not in GATES:
    raise ValueError(f"gate must be one of {GATES}, got {gate!r}")
  return gate


def logit(p: float) -> float:
  if not 0.0 < p < 1.0:
    raise ValueError(f"gate_init (pi_init) must be in (0, 1), got {p}")
  return math.log(p / (1.0 - p))


class AttentionGate(nnx.Module):
  """Per-head, per-token gate probabilities g_BTN = sigmoid(G_n(x_BTNH)), float32."""

  def __init__(self, num_heads: int, head_dim: int, *, kind: str = "linear", pi_init: float = 0.25,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    if check_gate(kind) not in HEAD_GATES:
      raise ValueError(f"AttentionGate needs gate 'linear' or 'mlp', got {kind!r} (use OutputGate for "
                       f"{OUTPUT_GATES}, no gate module for 'none')")
    _checks.check_size(num_heads, "num_heads")
    _checks.check_size(head_dim, "head_dim")
    N, H = num_heads, head_dim
    self.kind = kind
    bias_init = nnx.initializers.constant(logit(pi_init))
    init = _init.normal(1.0 / math.sqrt(H))
    if kind == "linear":
      self.w = _init.param(rngs, init, (N, H), ("heads", "kv"), param_dtype)
      self.b = _init.param(rngs, bias_init, (N,), ("heads",), param_dtype)
    else:
      F = max(H // 4, 1)
      self.w1 = _init.param(rngs, init, (N, H, F), ("heads", "kv", None), param_dtype)
      self.b1 = _init.param(rngs, _init.zeros, (N, F), ("heads", None), param_dtype)
      self.w2 = _init.param(rngs, _init.normal(1.0 / math.sqrt(F)), (N, F), ("heads", None),
                            param_dtype)
      self.b2 = _init.param(rngs, bias_init, (N,), ("heads",), param_dtype)

  def __call__(self, x_BTNH):
    x = x_BTNH.astype(jnp.float32)  # gates are tiny: keep them in f32 (kept in float under W8A8 too)
    if self.kind == "linear":
      logits_BTN = jnp.einsum("btnh,nh->btn", x, self.w[...]) + self.b[...]
    else:
      h_BTNF = jax.nn.relu(jnp.einsum("btnh,nhf->btnf", x, self.w1[...]) + self.b1[...])
      logits_BTN = jnp.einsum("btnf,nf->btn", h_BTNF, self.w2[...]) + self.b2[...]
    return jax.nn.sigmoid(logits_BTN)


class OutputGate(nnx.Module):
  """Qiu et al.'s output gate g = sigmoid(x_BTD W_g + b), float32: g_BTN (headwise) or g_BTNH."""

  def __init__(self, d_model: int, num_heads: int, head_dim: int, *,
               kind: str = "output_elementwise", pi_init: float = 0.25, rngs: nnx.Rngs):
    if check_gate(kind) not in OUTPUT_GATES:
      raise ValueError(f"OutputGate needs gate {OUTPUT_GATES[0]!r} or {OUTPUT_GATES[1]!r}, "
                       f"got {kind!r}")
    for name, size in (("d_model", d_model), ("num_heads", num_heads), ("head_dim", head_dim)):
      _checks.check_size(size, name)
    D, N, H = d_model, num_heads, head_dim
    self.kind = kind
    bias_init = nnx.initializers.constant(logit(pi_init))
    init = _init.normal(1.0 / math.sqrt(D))
    if kind == "output_headwise":
      self.w = _init.param(rngs, init, (D, N), ("embed", "heads"), jnp.float32)
      self.b = _init.param(rngs, bias_init, (N,), ("heads",), jnp.float32)
    else:
      self.w = _init.param(rngs, init, (D, N, H), ("embed", "heads", "kv"), jnp.float32)
      self.b = _init.param(rngs, bias_init, (N, H), ("heads", "kv"), jnp.float32)

  def __call__(self, x_BTD):
    x = x_BTD.astype(jnp.float32)
    if self.kind == "output_headwise":
      return jax.nn.sigmoid(jnp.einsum("btd,dn->btn", x, self.w[...]) + self.b[...])
    return jax.nn.sigmoid(jnp.einsum("btd,dnh->btnh", x, self.w[...]) + self.b[...])


def make_gate(kind: str, *, d_model: int, num_heads: int, head_dim: int, pi_init: float,
              param_dtype=jnp.float32, rngs: nnx.Rngs):
  """The gate module of `kind` (None for "none"); head gates need d_model == num_heads * head_dim."""
  if check_gate(kind) == "none":
    return None
  if kind in OUTPUT_GATES:
    return OutputGate(d_model, num_heads, head_dim, kind=kind, pi_init=pi_init, rngs=rngs)
  if d_model != num_heads * head_dim:
    raise ValueError(f"gate={kind!r} cuts the input into head-sized slices and needs d_model "
                     f"({d_model}) == num_heads * head_dim ({num_heads} * {head_dim})")
  return AttentionGate(num_heads, head_dim, kind=kind, pi_init=pi_init, param_dtype=param_dtype,
                       rngs=rngs)


def apply_gate(gate, x_BTD, ctx_BTNH):
  """ctx_BTNH times its gate of input x_BTD [B, T, D] (None: unchanged); ctx's dtype."""
  if gate is None:
    return ctx_BTNH
  B, T, N, _ = ctx_BTNH.shape
  if isinstance(gate, OutputGate):
    g = gate(x_BTD)
    g_BTNH = g[..., None] if g.ndim == 3 else g
  else:  # explicit head size, not -1: B or T = 0 must still reshape
    g_BTNH = gate(x_BTD.reshape(B, T, N, x_BTD.shape[-1] // N))[..., None]
  return ctx_BTNH * g_BTNH.astype(ctx_BTNH.dtype)
