"""Building blocks shared by the models: partitioned Linear / LayerNorm / Embed, masks."""
from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from outeffhop_jax.nn import MultiHeadAttention
from outeffhop_jax.nn import _init
from outeffhop_jax.ops.linear import dense_dot_general


def dense(d_in, d_out, axes, cfg, rngs, *, use_bias=True):
  """nnx.Linear [d_in, d_out] with logical axes `axes`, N(0, init_std) kernel, zero bias.

  Its dot is `ops.linear.dense_dot_general`: the values and derivatives of lax.dot_general, with a
  weight gradient that XLA:CPU runs as a fast matmul (OPT train step: -10 % on one core)."""
  return nnx.Linear(d_in, d_out, use_bias=use_bias, dtype=_init.as_dtype(cfg.dtype),
                    param_dtype=_init.as_dtype(cfg.param_dtype),
                    kernel_init=_init.partitioned(_init.normal(cfg.init_std), axes),
                    bias_init=_init.partitioned(_init.zeros, axes[1:]),
                    dot_general=dense_dot_general, rngs=rngs)


def layer_norm(d, cfg, rngs):
  return nnx.LayerNorm(d, epsilon=cfg.layer_norm_eps, dtype=_init.as_dtype(cfg.dtype),
                       param_dtype=_init.as_dtype(cfg.param_dtype),
                       scale_init=_init.partitioned(_init.ones, ("embed",)),
                       bias_init=_init.partitioned(_init.zeros, ("embed",)), rngs=rngs)


def embed(n, d, axes, cfg, rngs):
  return nnx.Embed(n, d, dtype=_init.as_dtype(cfg.dtype), param_dtype=_init.as_dtype(cfg.param_dtype),
                   embedding_init=_init.partitioned(_init.normal(cfg.init_std), axes), rngs=rngs)


def attention(cfg, rngs, *, use_bias=True):
  mha = MultiHeadAttention(cfg.d_model, cfg.num_heads, use_bias=use_bias,
                           kernel_init=_init.normal(cfg.init_std), rngs=rngs,
                           **cfg.attention_kwargs())
  mha.capture_intermediates = cfg.capture_intermediates
  mha.capture_attention_probs = cfg.capture_attention_probs
  return mha


def dropout(rate, rngs):
  return nnx.Dropout(rate, rngs=rngs)


class Sowing(nnx.Module):
  """Mixin: `self.record(name, x)` sows x as nnx.Intermediate only while capture is switched on."""

  def init_capture(self, cfg):
    self.capture_intermediates = cfg.capture_intermediates
    self.capture_attention_probs = cfg.capture_attention_probs

  def record(self, name, x):
    if self.capture_intermediates:
      # Names are the modules' own (e.g. "fc2"), which only nnx.capture can hold beside the layer.
      if not hasattr(self, "__captures__"):
        raise RuntimeError("capture_intermediates is on outside nnx.capture: read intermediates "
                           "with outeffhop_jax.nn.capture(model, fn)")
      self.sow(nnx.Intermediate, name, x)
    return x


def key_padding_mask(attention_mask_BT):
  """[B, S] (1/True = real token) -> boolean [B, 1, 1, S] for `ops.dot_product_attention`."""
  if attention_mask_BT is None:
    return None
  return jnp.asarray(attention_mask_BT).astype(bool)[:, None, None, :]
