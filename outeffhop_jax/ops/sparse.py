"""Sparse normalizers for the generalized sparse Hopfield model: sparsemax and alpha-entmax.

alpha-entmax (Peters et al. 2019): p = argmax_{p in simplex} <p, x> + H_alpha(p) with the Tsallis
entropy H_alpha(p) = sum_j (p_j - p_j^alpha) / (alpha (alpha - 1)); closed form
    p_i = [(alpha - 1) x_i - tau]_+ ^ (1 / (alpha - 1)),   tau such that sum_i p_i = 1.
alpha -> 1 recovers softmax, alpha = 2 is sparsemax (Euclidean projection onto the simplex).
Entries with low scores get probability exactly 0.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from outeffhop_jax.ops import _checks

_ENTMAX_BISECT_ITERS = 50


def _to_last(x, axis):
  return jnp.moveaxis(x, axis, -1)


@jax.custom_jvp
def _sparsemax_last(x):
  z = jnp.sort(x, axis=-1)[..., ::-1]
  k = jnp.arange(1, x.shape[-1] + 1, dtype=x.dtype)
  cumsum = jnp.cumsum(z, axis=-1)
  support = 1 + k * z > cumsum
  k_max = jnp.sum(support, axis=-1, keepdims=True)
  tau = (jnp.take_along_axis(cumsum, k_max - 1, axis=-1) - 1) / k_max.astype(x.dtype)
  return jnp.maximum(x - tau, 0.0)


@_sparsemax_last.defjvp
def _sparsemax_last_jvp(primals, tangents):
  (x,), (dx,) = primals, tangents
  p = _sparsemax_last(x)
  s = (p > 0).astype(x.dtype)
  # Jacobian diag(s) - s s^T / |s|: project the tangent onto the support, minus its mean there.
  mean = jnp.sum(s * dx, axis=-1, keepdims=True) / jnp.sum(s, axis=-1, keepdims=True)
  return p, s * (dx - mean)


def sparsemax(x, axis: int = -1):
  """Sparsemax (Martins & Astudillo 2016): Euclidean projection of x onto the probability simplex.

  p = max(x - tau, 0) with tau from the sorted cumulative sums. Exact zeros outside the support.
  Tangent: dp = s * (dx - mean_{support}(dx)), s the support indicator. Computed in >= float32.
  """
  x = jnp.asarray(x)
  _checks.check_floating(x, "x")
  axis = _checks.normalize_axis(axis, x.ndim)
  ct = jnp.promote_types(x.dtype, jnp.float32)
  out = _sparsemax_last(_to_last(x, axis).astype(ct))
  return jnp.moveaxis(out, -1, axis).astype(x.dtype)


def _entmax_bisect(x, alpha):
  """Forward alpha-entmax over the last axis by bisection on tau; alpha keepdims-shaped (..., 1)."""
  am1 = alpha - 1.0
  xs = x * am1
  d = x.shape[-1]
  max_val = jnp.max(xs, axis=-1, keepdims=True)
  # p_max = 1 gives tau_lo, uniform 1/d gives tau_hi; the root lies between.
  tau_lo = max_val - 1.0
  tau_hi = max_val - (1.0 / d) ** am1

  def p_of(tau):
    return jnp.maximum(xs - tau, 0.0) ** (1.0 / am1)

  def body(_, bounds):
    lo, hi = bounds
    mid = (lo + hi) / 2
    f_mid = jnp.sum(p_of(mid), axis=-1, keepdims=True) - 1.0
    # f decreases in tau: a positive f means the root lies above mid.
    lo = jnp.where(f_mid >= 0, mid, lo)
    hi = jnp.where(f_mid >= 0, hi, mid)
    return lo, hi

  lo, hi = jax.lax.fori_loop(0, _ENTMAX_BISECT_ITERS, body, (tau_lo, tau_hi))
  p = p_of((lo + hi) / 2)
  return p / jnp.sum(p, axis=-1, keepdims=True)


@jax.custom_vjp
def _entmax_last(x, alpha):
  return _entmax_bisect(x, alpha)


def _entmax_fwd(x, alpha):
  p = _entmax_bisect(x, alpha)
  return p, (p, alpha)


def _entmax_bwd(res, dp):
  p, alpha = res
  # Closed form (Peters et al. 2019; Correia et al. 2019): with g = p^(2 - alpha) on the support,
  # dx = g * dp - (<g, dp> / sum g) g.
  g = jnp.where(p > 0, p ** (2.0 - alpha), 0.0)
  g_sum = jnp.sum(g, axis=-1, keepdims=True)
  q = jnp.sum(g * dp, axis=-1, keepdims=True) / g_sum
  dx = g * dp - q * g
  # d p / d alpha (Correia et al. 2019, eq. 10), contracted with dp.
  am1 = alpha - 1.0
  plogp = jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0)
  ent = jnp.sum(plogp, axis=-1, keepdims=True)
  g_norm = g / g_sum
  dp_dalpha = (p - g_norm) / am1**2 - (plogp - g_norm * ent) / am1
  dalpha = jnp.sum(dp * dp_dalpha, axis=-1, keepdims=True)
  return dx, dalpha


_entmax_last.defvjp(_entmax_fwd, _entmax_bwd)


def entmax(x, alpha, axis: int = -1):
  """alpha-entmax, 1 < alpha <= 2, forward by bisection and closed-form backward (custom_vjp).

  Args:
    x: float logits.
    alpha: scalar or array broadcastable to x's shape with `axis` removed; differentiable (the
      learnable-alpha generalized sparse Hopfield layers train it).
    axis: axis to normalise over.
  Returns probabilities on the simplex with exact zeros, x's shape and dtype (empty for an
  empty `axis`).
  """
  x = jnp.asarray(x)
  _checks.check_floating(x, "x")
  axis = _checks.normalize_axis(axis, x.ndim)
  # Scalars and concrete arrays (a learned alpha in eager code); a traced alpha is not checked.
  _checks.check_param(alpha, "alpha", lambda v: (v > 1.0) & (v <= 2.0), "in (1, 2] (entmax)")
  ct = jnp.promote_types(x.dtype, jnp.float32)
  if x.shape[axis] == 0:
    return x  # a row over 0 entries is an empty row
  x_last = _to_last(x, axis).astype(ct)
  alpha = jnp.asarray(alpha, ct)
  reduced = x_last.shape[:-1]
  _checks.check_broadcastable(alpha.shape, reduced, "alpha", f"the reduced shape {reduced}")
  alpha_k = jnp.broadcast_to(alpha, reduced)[..., None]
  # Inside jax.shard_map the custom_vjp's alpha cotangent varies like x: alpha must too.
  alpha_k = _checks.vary_like(alpha_k, x_last)
  out = _entmax_last(x_last, alpha_k)
  return jnp.moveaxis(out, -1, axis).astype(x.dtype)


entmax15 = functools.partial(entmax, alpha=1.5)
