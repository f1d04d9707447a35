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

# Newton on the threshold stops once every row's step is below this fraction of max(|tau|, 1); it
# converges quadratically (monotonically from below), so the value reached is exact to float32.
_NEWTON_RTOL = 1e-7
_NEWTON_MAX_ITERS = 64


def _to_last(x, axis):
  return jnp.moveaxis(x, axis, -1)


def _sparsemax_threshold(x):
  """tau with sum_i max(x_i - tau, 0) = 1 over the last axis, exact; x (..., d) float -> (..., 1).

  Michelot's finite Newton method: tau <- (sum_{x_i > tau} x_i - 1) / |{x_i > tau}| increases
  monotonically to the threshold (every such tau is a lower bound) and stops as soon as the support
  {x_i > tau} stops changing, after a few passes over the row instead of a full sort. It starts from
  the larger of two lower bounds: max(x) - 1 (the top entry alone) and (sum(x) - 1) / d (the
  whole row as support).
  """
  d = x.shape[-1]
  tau0 = jnp.maximum(jnp.max(x, axis=-1, keepdims=True) - 1.0,
                     (jnp.sum(x, axis=-1, keepdims=True) - 1.0) / d)

  def step(tau):
    # Arithmetic (max, sign) rather than a boolean mask and select: XLA:CPU vectorises these
    # reductions several times better. The count is exact (a float sum of ones below 2^24).
    t = jnp.maximum(x - tau, 0.0)
    cnt = jnp.sum(jnp.sign(t), axis=-1, keepdims=True)
    return tau + (jnp.sum(t, axis=-1, keepdims=True) - 1.0) / cnt, cnt

  def cond(c):
    _, cnt, cnt_prev, i = c
    return jnp.logical_and(i < d + 1, jnp.any(cnt != cnt_prev))

  def body(c):
    tau, cnt, _, i = c
    tau_new, cnt_new = step(tau)
    return tau_new, cnt_new, cnt, i + 1

  tau1, cnt1 = step(tau0)
  tau, *_ = jax.lax.while_loop(cond, body, (tau1, cnt1, jnp.full_like(cnt1, -1.0), 0))
  return tau


@jax.custom_jvp
def _sparsemax_last(x):
  return jnp.maximum(x - _sparsemax_threshold(x), 0.0)


@_sparsemax_last.defjvp
def _sparsemax_last_jvp(primals, tangents):
  (x,), (dx,) = primals, tangents
  p = _sparsemax_last(x)
  s = jnp.sign(p)  # the support indicator (p >= 0); sign vectorises better than a bool cast
  # Jacobian diag(s) - s s^T / |s|: project the tangent onto the support, minus its mean there.
  mean = jnp.sum(s * dx, axis=-1, keepdims=True) / jnp.sum(s, axis=-1, keepdims=True)
  return p, s * (dx - mean)


def sparsemax(x, axis: int = -1):
  """Sparsemax (Martins & Astudillo 2016): Euclidean projection of x onto the probability simplex.

  p = max(x - tau, 0) with tau exact from Michelot's finite Newton iteration (no sort). Exact zeros
  outside the support.
  Tangent: dp = s * (dx - mean_{support}(dx)), s the support indicator. Computed in >= float32.
  """
  x = jnp.asarray(x)
  _checks.check_floating(x, "x")
  axis = _checks.normalize_axis(axis, x.ndim)
  if x.shape[axis] == 0:
    return x  # a row over 0 entries is an empty row
  ct = jnp.promote_types(x.dtype, jnp.float32)
  out = _sparsemax_last(_to_last(x, axis).astype(ct))
  return jnp.moveaxis(out, -1, axis).astype(x.dtype)


def _pow_support(t, e):
  """t^e for t >= 0 and e >= 0, with 0^e = 0 (also for e = 0): the power on the support only.

  Written without a boolean select (sign times a clamped exp-log), which XLA:CPU vectorises better.
  """
  return jnp.sign(t) * jnp.exp(e * jnp.log(jnp.maximum(t, jnp.finfo(t.dtype).tiny)))


def _entmax_newton(x, alpha):
  """Forward alpha-entmax over the last axis; alpha keepdims-shaped (..., 1).

  With xs = (alpha - 1) x, n = 1 / (alpha - 1) and t = max(xs - tau, 0), the threshold solves
  g(tau) = ||t||_n = 1. g is convex and decreasing in tau (a norm of convex decreasing entries), so
  Newton from below, tau <- tau + (S - S^(1 - 1/n)) / sum t^(n-1) with S = sum t^n, rises
  monotonically to the root; on the norm (not on S = g^n) it is nearly linear, converging in a few
  passes even for alpha near 1, and for alpha = 2 it is Michelot's exact sparsemax step. Start: the
  larger of the lower bounds max(xs) - 1 and mean(xs) - d^(1 - alpha) (power-mean inequality).
  """
  am1 = alpha - 1.0
  xs = x * am1
  d = x.shape[-1]
  tau0 = jnp.maximum(jnp.max(xs, axis=-1, keepdims=True) - 1.0,
                     jnp.mean(xs, axis=-1, keepdims=True) - jnp.exp(-am1 * jnp.log(float(d))))
  nm1 = 1.0 / am1 - 1.0

  def powers(tau):
    t = jnp.maximum(xs - tau, 0.0)
    return t, _pow_support(t, nm1)

  def step(tau):
    t, tn1 = powers(tau)
    s = jnp.sum(t * tn1, axis=-1, keepdims=True)
    dsum = jnp.sum(tn1, axis=-1, keepdims=True)
    tau_new = tau + (s - s ** (1.0 - am1)) / jnp.where(dsum > 0, dsum, 1.0)
    return jnp.maximum(tau_new, tau)  # monotone from below: rounding may not move it back

  def cond(c):
    tau, tau_prev, i = c
    scale = jnp.maximum(jnp.abs(tau), 1.0)
    return jnp.logical_and(i < _NEWTON_MAX_ITERS, jnp.any(tau - tau_prev > _NEWTON_RTOL * scale))

  def body(c):
    tau, _, i = c
    return step(tau), tau, i + 1

  tau, *_ = jax.lax.while_loop(cond, body, (step(tau0), tau0, 0))
  t, tn1 = powers(tau)
  p = t * tn1
  return p / jnp.sum(p, axis=-1, keepdims=True)


@jax.custom_vjp
def _entmax_last(x, alpha):
  return _entmax_newton(x, alpha)


def _entmax_fwd(x, alpha):
  p = _entmax_newton(x, alpha)
  return p, (p, alpha)


def _entmax_bwd(res, dp):
  p, alpha = res
  # Closed form (Peters et al. 2019; Correia et al. 2019): with g = p^(2 - alpha) on the support,
  # dx = g * dp - (<g, dp> / sum g) g.
  g = _pow_support(p, 2.0 - alpha)
  g_sum = jnp.sum(g, axis=-1, keepdims=True)
  q = jnp.sum(g * dp, axis=-1, keepdims=True) / g_sum
  dx = g * dp - q * g
  # d p / d alpha (Correia et al. 2019, eq. 10), contracted with dp.
  am1 = alpha - 1.0
  plogp = p * jnp.log(jnp.maximum(p, jnp.finfo(p.dtype).tiny))  # 0 log 0 = 0
  ent = jnp.sum(plogp, axis=-1, keepdims=True)
  g_norm = g / g_sum
  dp_dalpha = (p - g_norm) / am1**2 - (plogp - g_norm * ent) / am1
  dalpha = jnp.sum(dp * dp_dalpha, axis=-1, keepdims=True)
  return dx, dalpha


_entmax_last.defvjp(_entmax_fwd, _entmax_bwd)


def entmax(x, alpha, axis: int = -1):
  """alpha-entmax, 1 < alpha <= 2: forward by Newton on the threshold, closed-form backward
  (custom_vjp).

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
