"""Head-split linear maps of attention: [.., D] -> [.., N, H] and [.., N, H] -> [.., D].

Kernels are 3-D ([D, N, H] and [N, H, D]) so heads can be sharded on their own logical axis.
"""
from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from outeffhop_jax.nn import _init


class HeadsIn(nnx.Module):
  """y_BTNH = x_BTD @ kernel_DNH + bias_NH."""

  def __init__(self, d_in: int, num_heads: int, head_dim: int, *, use_bias=True, kernel_init=None,
               dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kernel_init = kernel_init or nnx.initializers.lecun_normal(in_axis=0, out_axis=(1, 2))
    self.kernel = _init.param(rngs, kernel_init, (d_in, num_heads, head_dim),
                              ("embed", "heads", "kv"), param_dtype)
    self.bias = (_init.param(rngs, _init.zeros, (num_heads, head_dim), ("heads", "kv"), param_dtype)
                 if use_bias else None)
    self.dtype = dtype

  def __call__(self, x_BTD):
    dtype = self.dtype or x_BTD.dtype
    y = jnp.einsum("btd,dnh->btnh", x_BTD.astype(dtype), self.kernel[...].astype(dtype))
    if self.bias is not None:
      y = y + self.bias[...].astype(dtype)
    return y


class HeadsOut(nnx.Module):
  """y_BTD = sum_{n,h} x_BTNH kernel_NHD + bias_D."""

  def __init__(self, num_heads: int, head_dim: int, d_out: int, *, use_bias=True, kernel_init=None,
               dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kernel_init = kernel_init or nnx.initializers.lecun_normal(in_axis=(0, 1), out_axis=2)
    self.kernel = _init.param(rngs, kernel_init, (num_heads, head_dim, d_out),
                              ("heads", "kv", "embed"), param_dtype)
    self.bias = (_init.param(rngs, _init.zeros, (d_out,), ("embed",), param_dtype)
                 if use_bias else None)
    self.dtype = dtype

  def __call__(self, x_BTNH):
    dtype = self.dtype or x_BTNH.dtype
    y = jnp.einsum("btnh,nhd->btd", x_BTNH.astype(dtype), self.kernel[...].astype(dtype))
    if self.bias is not None:
      y = y + self.bias[...].astype(dtype)
    return y
