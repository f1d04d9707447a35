"""Attention normalizers: softmax, Softmax_1, sink softmax, clipped softmax (docs/math.md).

All functions normalise over `axis` and take an optional `where` (True = valid entry,
broadcastable to `x`; the library's one mask rule, `_checks.as_bool_mask`: boolean, or numeric with
non-zero = valid; an additive 0 / -inf mask is refused); masked entries get probability exactly 0.
Low-precision inputs (bf16, f16) are computed in float32 and cast back, so a fully masked row or
extreme logits never produce NaN. Empty inputs give empty outputs: a row over 0 entries is an empty
row, and a log-sum-exp over 0 entries is the sink alone (log(exp(s) + 0) = s; 0 for Softmax_1).
Scalar parameters (sink, gamma, zeta) are checked when their values are known (not under jit).

Sink softmax with sink logit s:   p_i = exp(x_i) / (exp(s) + sum_j exp(x_j)).
  s = 0 is Softmax_1 ("attention is off by one"), s = log n is softmax_n, s = -inf is softmax.
Stable form: m = stop_gradient(max(max_j x_j, s)); p_i = exp(x_i - m) / (exp(s - m) + sum_j exp(x_j - m)).
The clamp at s (0 for Softmax_1) is what keeps a row of very negative logits from dividing 0 by 0.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from outeffhop_jax.ops import _checks


def _compute_dtype(dtype) -> jnp.dtype:
  # Half-precision exp/sum lose too much (and overflow in f16); accumulate in f32 like XLA's softmax.
  return jnp.promote_types(dtype, jnp.float32)


def _prepare(x, axis, where):
  x = jnp.asarray(x)
  _checks.check_floating(x, "x")
  axis = _checks.normalize_axis(axis, x.ndim, "axis")
  if where is not None:
    where = _checks.as_bool_mask(where, "where")
    _checks.check_broadcastable(where.shape, x.shape, "where", "x")
    where = jnp.broadcast_to(where, x.shape)
  return x, axis, where


def _check_sink(sink):
  # -inf is plain softmax; +inf would take all the mass (every probability 0) and NaN poisons all.
  _checks.check_param(sink, "sink", lambda v: (v < jnp.inf), "a real number or -inf (no sink)")


def _sink_keepdims(sink, x_shape, axis, name="sink"):
  """Broadcasts `sink` to x's shape with `axis` kept as size 1 (the reduced shape, keepdims)."""
  sink = jnp.asarray(sink)
  reduced = x_shape[:axis] + x_shape[axis + 1:]
  keep = x_shape[:axis] + (1,) + x_shape[axis + 1:]
  if sink.ndim == len(x_shape) and sink.shape[axis] == 1:
    _checks.check_broadcastable(sink.shape, keep, name, "x with the normalised axis kept as size 1")
    return jnp.broadcast_to(sink, keep)
  _checks.check_broadcastable(sink.shape, reduced, name, f"the reduced shape {reduced}")
  return jnp.expand_dims(jnp.broadcast_to(sink, reduced), axis)


def _stable_probs(x, sink, axis, where):
  """Sink-softmax probabilities in the stable form; `sink` keepdims-shaped, may be -inf (no sink)."""
  if where is not None:
    x = jnp.where(where, x, -jnp.inf)
  # initial=-inf: a row over 0 entries (x.shape[axis] == 0) has max -inf, not a reduction error.
  m = jnp.max(x, axis=axis, keepdims=True, initial=-jnp.inf)
  m = lax.stop_gradient(jnp.maximum(m, sink))
  # A fully masked row with no sink has m = -inf: shift by 0 instead so exp() sees -inf, not NaN.
  m = jnp.where(jnp.isfinite(m), m, 0.0)
  e = jnp.exp(x - m)
  denom = jnp.exp(sink - m) + jnp.sum(e, axis=axis, keepdims=True)
  # denom == 0 only for a fully masked row without a sink; its probabilities are defined as 0.
  return e / jnp.where(denom == 0, 1.0, denom), m, denom


@functools.partial(jax.custom_jvp, nondiff_argnums=(3,))
def _sink_softmax(x, sink, where, axis):
  p, _, _ = _stable_probs(x, sink, axis, where)
  return p


@_sink_softmax.defjvp
def _sink_softmax_jvp(axis, primals, tangents):
  x, sink, where = primals
  dx, dsink, _ = tangents
  p, m, denom = _stable_probs(x, sink, axis, where)
  if where is not None:
    dx = jnp.where(where, dx, 0.0)
  # dp_i = p_i (dx_i - <p, dx> - p_sink ds), p_sink = exp(s - m) / denom.
  p_sink = jnp.exp(sink - m) / jnp.where(denom == 0, 1.0, denom)
  # A -inf sink (plain softmax) has p_sink = 0 and no meaningful tangent.
  dsink = jnp.where(jnp.isfinite(sink), dsink, 0.0)
  inner = jnp.sum(p * dx, axis=axis, keepdims=True) + p_sink * dsink
  return p, p * (dx - inner)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def _softmax1_core(x, where, axis):
  # _stable_probs with s = 0, minus its guards: m = max(max_j x_j, 0) is finite (0 for a fully
  # masked row) and denom >= 1 (the max entry, or the sink when m = 0, contributes exp(0) = 1), so
  # neither the finite-shift nor the zero-denominator select is needed, and the max fuses with exp
  # as in jax.nn.softmax. The sink enters the max and the sum as one scalar each, no extra pass.
  if where is not None:
    x = jnp.where(where, x, -jnp.inf)
  # initial=0 is the sink's logit in the max; it also defines the max of a row over 0 entries.
  m = lax.stop_gradient(jnp.max(x, axis=axis, keepdims=True, initial=0.0))
  e = jnp.exp(x - m)
  return e / (jnp.exp(-m) + jnp.sum(e, axis=axis, keepdims=True))


@_softmax1_core.defjvp
def _softmax1_core_jvp(axis, primals, tangents):
  x, where = primals
  dx, _ = tangents
  p = _softmax1_core(x, where, axis)
  if where is not None:
    dx = jnp.where(where, dx, 0.0)
  return p, p * (dx - jnp.sum(p * dx, axis=axis, keepdims=True))


def softmax1(x, axis: int = -1, where=None):
  """Softmax_1: exp(x_i) / (1 + sum_j exp(x_j)) = softmax([x, 0])[:-1].

  Args:
    x: float array of logits, any shape.
    axis: axis to normalise over.
    where: optional boolean mask broadcastable to x; False entries get probability 0.
  Returns:
    Probabilities of x's shape and dtype; each row sums to < 1 (the rest goes to the implicit zero
    logit). A fully masked row is exactly 0 with zero gradient. Tangent: dp = p * (dx - <p, dx>).
  """
  x, axis, where = _prepare(x, axis, where)
  out = _softmax1_core(x.astype(_compute_dtype(x.dtype)), where, axis)
  return out.astype(x.dtype)


def softmax(x, axis: int = -1, where=None):
  """Softmax that returns 0 (not NaN or uniform) on a fully masked row: sink softmax with s = -inf."""
  x, axis, where = _prepare(x, axis, where)
  ct = _compute_dtype(x.dtype)
  sink = jnp.full(x.shape[:axis] + (1,) + x.shape[axis + 1:], -jnp.inf, ct)
  return _sink_softmax(x.astype(ct), sink, where, axis).astype(x.dtype)


def softmax_with_sink(x, sink, axis: int = -1, where=None):
  """Sink softmax: p_i = exp(x_i) / (exp(sink) + sum_j exp(x_j)).

  Args:
    x: float array of logits.
    sink: sink logit(s), broadcastable against x's shape with `axis` removed (or with `axis` kept as
      size 1). Differentiable: d sink = -sum_i p_sink (<p, dp>) per row. -inf means no sink (softmax).
    axis, where: as in `softmax1`.
  """
  x, axis, where = _prepare(x, axis, where)
  _check_sink(sink)
  ct = _compute_dtype(x.dtype)
  sink = _sink_keepdims(sink, x.shape, axis).astype(ct)
  return _sink_softmax(x.astype(ct), sink, where, axis).astype(x.dtype)


def logsumexp_with_sink(x, sink, axis: int = -1, where=None):
  """log(exp(sink) + sum_j exp(x_j)) over `axis` (reduced shape); its gradient in x is the sink softmax."""
  x, axis, where = _prepare(x, axis, where)
  _check_sink(sink)
  ct = _compute_dtype(x.dtype)
  sink = _sink_keepdims(sink, x.shape, axis).astype(ct)
  xc = x.astype(ct)
  if where is not None:
    xc = jnp.where(where, xc, -jnp.inf)
  m = jnp.max(xc, axis=axis, keepdims=True, initial=-jnp.inf)  # -inf over 0 entries
  m = lax.stop_gradient(jnp.maximum(m, sink))
  m = jnp.where(jnp.isfinite(m), m, 0.0)
  s = jnp.exp(sink - m) + jnp.sum(jnp.exp(xc - m), axis=axis, keepdims=True)
  out = jnp.squeeze(m + jnp.log(s), axis)
  return out.astype(x.dtype)


def logsumexp1(x, axis: int = -1, where=None):
  """log(1 + sum_j exp(x_j)) = logaddexp(0, logsumexp(x)); grad = softmax1(x). Reduces `axis`."""
  x = jnp.asarray(x)
  return logsumexp_with_sink(x, jnp.zeros((), _compute_dtype(x.dtype)), axis=axis, where=where)


def _check_clip_params(gamma, zeta):
  # Finite too: gamma = -inf or zeta = inf make (zeta - gamma) p + gamma inf - inf = NaN (or all 1).
  _checks.check_param(gamma, "gamma", lambda v: (v <= 0) & (v > -jnp.inf),
                      "finite and <= 0 (stretch below zero)")
  _checks.check_param(zeta, "zeta", lambda v: (v >= 1) & (v < jnp.inf),
                      "finite and >= 1 (stretch above one)")


def _clip(p, gamma, zeta, where):
  out = jnp.clip((zeta - gamma) * p + gamma, 0.0, 1.0)
  return out if where is None else jnp.where(where, out, 0.0)


def clipped_softmax(x, gamma, zeta=1.0, axis: int = -1, where=None):
  """Clipped softmax (Bondarenko et al. 2023): clip((zeta - gamma) * softmax(x) + gamma, 0, 1).

  gamma <= 0 and zeta >= 1; probabilities below -gamma / (zeta - gamma) become exactly 0, which lets
  a head "do nothing" without growing huge logits. gamma = -alpha / T is the sequence-length form.
  """
  _check_clip_params(gamma, zeta)
  x, axis, where = _prepare(x, axis, where)
  ct = _compute_dtype(x.dtype)
  p = softmax(x.astype(ct), axis=axis, where=where)
  return _clip(p, gamma, zeta, where).astype(x.dtype)


def clipped_softmax1(x, gamma, zeta=1.0, axis: int = -1, where=None):
  """Clipped Softmax_1: clip((zeta - gamma) * softmax1(x) + gamma, 0, 1)."""
  _check_clip_params(gamma, zeta)
  x, axis, where = _prepare(x, axis, where)
  ct = _compute_dtype(x.dtype)
  p = softmax1(x.astype(ct), axis=axis, where=where)
  return _clip(p, gamma, zeta, where).astype(x.dtype)
