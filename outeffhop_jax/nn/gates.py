"""Gated attention (Bondarenko et al., "Quantizable Transformers", 2023), per head and per token.

    out_BTNH = sigmoid(G_n(x_BTNH)) * attn_BTNH

x_BTNH is the attention *input* hidden state x_BTD cut into N head-sized slices (D = N * H).
  "linear":  G_n(x) = <w_n, x> + b_n                       weights [N, H], bias [N]
  "mlp":     G_n(x) = <w2_n, relu(W1_n x + b1_n)> + b2_n   W1 [N, H, H/4], w2 [N, H/4]
All heads are computed by one einsum over head-stacked weights (no per-head loop). The output bias
starts at logit(pi_init), so every gate opens to pi_init at initialisation (0.25 for OPT/ViT).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from outeffhop_jax.nn import _init

GATES = ("none", "linear", "mlp")


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
    if check_gate(kind) == "none":
      raise ValueError("AttentionGate needs gate 'linear' or 'mlp'; use no gate module for 'none'")
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
