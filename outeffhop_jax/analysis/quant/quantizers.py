"""Uniform fake quantization and range estimation for the W8A8 protocol (docs/w8a8.md).

Asymmetric (activations, uint8):  the range [x_min, x_max] is first widened to contain 0, then
    delta = (x_max - x_min) / (2^b - 1),  z = round(-x_min / delta),
    q = clip(round(x / delta) + z, 0, 2^b - 1),  x_hat = (q - z) delta      (0 is exact)
Symmetric (weights, int8):  delta = max(|x_min|, |x_max|) / (2^(b-1) - 1),
    q = clip(round(x / delta), -2^(b-1), 2^(b-1) - 1),  x_hat = q delta
Gradients pass straight through (x_hat = x + stop_gradient(x_hat - x)), so the same quantizer serves
quantization-aware fine-tuning.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def _grid(num_bits, symmetric):
  if not isinstance(num_bits, int) or not 2 <= num_bits <= 16:
    raise ValueError(f"num_bits must be an int in [2, 16], got {num_bits!r}")
  if symmetric:
    return -(2 ** (num_bits - 1)), 2 ** (num_bits - 1) - 1
  return 0, 2**num_bits - 1


def quant_params(x_min, x_max, *, num_bits: int, symmetric: bool):
  """(delta, zero_point, q_min, q_max) for a range; zero_point is 0 when symmetric."""
  q_min, q_max = _grid(num_bits, symmetric)
  x_min = jnp.asarray(x_min, jnp.float32)
  x_max = jnp.asarray(x_max, jnp.float32)
  if symmetric:
    delta = jnp.maximum(jnp.abs(x_min), jnp.abs(x_max)) / q_max
    zero = jnp.zeros_like(delta)
  else:
    x_min = jnp.minimum(x_min, 0.0)
    x_max = jnp.maximum(x_max, 0.0)
    delta = (x_max - x_min) / (q_max - q_min)
    zero = jnp.round(-x_min / jnp.where(delta > 0, delta, 1.0))
  # A degenerate (all-zero) range quantizes everything to 0 instead of dividing by 0.
  delta = jnp.where(delta > 0, delta, 1.0)
  return delta, zero, q_min, q_max


def fake_quant(x, *, num_bits: int, symmetric: bool, x_min, x_max):
  """Quantize-dequantize x on the uniform grid of [x_min, x_max] (see module docstring)."""
  x = jnp.asarray(x)
  delta, zero, q_min, q_max = quant_params(x_min, x_max, num_bits=num_bits, symmetric=symmetric)
  xf = x.astype(jnp.float32)
  q = jnp.clip(jnp.round(xf / delta) + zero, q_min, q_max)
  x_hat = ((q - zero) * delta).astype(x.dtype)
  return x + jax.lax.stop_gradient(x_hat - x)


def batch_range(x, percentile: float | None = None, where=None):
  """(min, max) of a batch, or its (100 - p, p) percentiles (OPT's 99.999 option).

  where: optional boolean mask broadcastable to x; only True entries count (e.g. the unmasked
  attention scores). An all-False mask gives (0, 0).
  """
  xf = jnp.asarray(x, jnp.float32)
  if where is not None:
    where = jnp.broadcast_to(jnp.asarray(where, bool), xf.shape).reshape(-1)
  xf = xf.reshape(-1)
  if percentile is not None and not 50.0 < percentile <= 100.0:
    raise ValueError(f"percentile must be in (50, 100], got {percentile}")
  if where is None:
    if percentile is None:
      return jnp.min(xf), jnp.max(xf)
    return jnp.percentile(xf, 100.0 - percentile), jnp.percentile(xf, percentile)
  any_valid = jnp.any(where)
  if percentile is None:
    lo, hi = jnp.min(jnp.where(where, xf, jnp.inf)), jnp.max(jnp.where(where, xf, -jnp.inf))
  else:
    xn = jnp.where(where, xf, jnp.nan)
    lo, hi = jnp.nanpercentile(xn, 100.0 - percentile), jnp.nanpercentile(xn, percentile)
  return jnp.where(any_valid, lo, 0.0), jnp.where(any_valid, hi, 0.0)


def update_range(state, x, *, momentum: float = 0.9, percentile: float | None = None, where=None):
  """Running min-max: the first batch sets the range, later ones move it by (1 - momentum).

  state: (x_min, x_max, initialised) with `initialised` a bool scalar; returns the new state.
  where: as in `batch_range`.
  """
  x_min, x_max, initialised = state
  b_min, b_max = batch_range(x, percentile, where)
  new_min = jnp.where(initialised, momentum * x_min + (1 - momentum) * b_min, b_min)
  new_max = jnp.where(initialised, momentum * x_max + (1 - momentum) * b_max, b_max)
  return new_min, new_max, jnp.asarray(True)


def weight_range(w, *, num_bits: int = 8, method: str = "minmax", grid_size: int = 100):
  """Symmetric per-tensor weight range: min-max, or the clipping that minimises the MSE ("mse")."""
  w = jnp.asarray(w, jnp.float32)
  absmax = jnp.max(jnp.abs(w))
  if method == "minmax":
    return -absmax, absmax
  if method != "mse":
    raise ValueError(f"method must be 'minmax' or 'mse', got {method!r}")
  ratios = jnp.linspace(1.0 / grid_size, 1.0, grid_size)

  def mse(r):
    wq = fake_quant(w, num_bits=num_bits, symmetric=True, x_min=-r * absmax, x_max=r * absmax)
    return jnp.mean((wq - w) ** 2)

  best = ratios[jnp.argmin(jax.vmap(mse)(ratios))]
  return -best * absmax, best * absmax


def quantize_weight(w, *, num_bits: int = 8, method: str = "minmax"):
  """Symmetric per-tensor fake-quantized weight."""
  lo, hi = weight_range(w, num_bits=num_bits, method=method)
  return fake_quant(w, num_bits=num_bits, symmetric=True, x_min=lo, x_max=hi)
