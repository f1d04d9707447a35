"""The field's other answers to the attention sink: sigmoid, softplus (LSSA), stablemax, softpick.

Each normalises over `axis` with an optional `where` (True = valid, broadcastable to x; boolean or
0/1, an additive 0 / -inf mask is refused: `_checks.as_bool_mask`); masked entries get probability
exactly 0, a fully masked row is all zeros and a row over 0 entries is an empty row. They compute in
float32 (bf16 / f16 inputs are promoted and cast back) and stay finite, with finite gradients, on
logits of +-1e4, on -inf logits and on fully masked rows. n is the row's number of valid entries
(the count of `where` along `axis`; the axis length without a mask), so a causal row uses its own
length.

  sigmoid     p_i = sigmoid(x_i + b),  b = -log n (or a fixed bias)          elementwise, no row sum
              Ramapuram et al., "Theory, Analysis, and Best Practices for Sigmoid Self-Attention",
              ICLR 2025.
  softplus    p_i = softplus(log(n) x_i) / sum_j softplus(log(n) x_j)          l1-normalised
              Gao & Spratling, "Softplus Attention with Re-weighting Boosts Length Extrapolation in
              LLMs", arXiv 2501.13428: the first stage, LSSA (log n is the entropy-invariant length
              scale). The second stage (re-weighting, LSSAR) is not implemented.
  stablemax   s(x) = x + 1 (x >= 0), 1 / (1 - x) (x < 0);  p_i = s(x_i) / sum_j s(x_j)
              Prieto et al., "Grokking at the Edge of Numerical Stability", 2025. No exp.
  softpick    p_i = relu(e^x_i - 1) / (sum_j |e^x_j - 1| + eps)               rows may sum below 1
              Zuhri et al., "Softpick: No Attention Sink, No Massive Activations with Rectified
              Softmax", 2025. Exactly 0 for x_i <= 0.
Gradients: autodiff of the stable forms below (softplus as a softmax of log-softplus scores, which
has the softmax's own JVP), except stablemax, which has its own JVP dp = r dx - p <r, dx>,
r = s'(x) / sum s (no sum^-2 to underflow); every branch a `where` does not select is fed a safe
value (the double-where trick), so no inf / NaN leaks into a gradient.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from outeffhop_jax.ops import _checks
from outeffhop_jax.ops.normalizers import _compute_dtype, _prepare, softmax

SOFTPICK_EPS = 1e-6


def _valid_count(shape, axis, where, dtype):
  """n, the number of valid entries per row, keepdims-shaped (a scalar without a mask)."""
  if where is None:
    return jnp.asarray(shape[axis], dtype)
  return jnp.sum(where, axis=axis, keepdims=True).astype(dtype)


def _safe_logits(xc, where):
  # Masked logits (possibly -inf or garbage) are replaced before any arithmetic touches them.
  return xc if where is None else jnp.where(where, xc, 0.0)


def log_softplus(z):
  """log(softplus(z)) for every z; gradient sigmoid(z) / softplus(z).

  softplus(z) = e^z (1 - e^z / 2 + ...), so below -30 (where softplus heads for underflow) it is z
  to float precision.
  """
  hi = z > -30.0
  return jnp.where(hi, jnp.log(jax.nn.softplus(jnp.where(hi, z, 0.0))), z)


def stablemax_score(xc):
  """s(x) = x + 1 for x >= 0, 1 / (1 - x) for x < 0 (positive, C^1, no exp); double-where safe."""
  pos = xc >= 0
  return jnp.where(pos, jnp.where(pos, xc, 0.0) + 1.0, 1.0 / (1.0 - jnp.where(pos, 0.0, xc)))


def _stablemax_parts(xc, where, axis):
  """(s, den, r): scores s (0 where masked), den = sum_j s_j (1 where 0) and r = s'(x) / den."""
  xc = _safe_logits(xc, where)
  s = stablemax_score(xc)
  s = s if where is None else jnp.where(where, s, 0.0)
  den = jnp.sum(s, axis=axis, keepdims=True)
  den = jnp.where(den > 0, den, 1.0)
  # s' = 1 (x >= 0, where den >= 1) or s^2 (x < 0), written s * (s / den): no underflow first.
  r = jnp.where(xc >= 0, 1.0 / den, s * (s / den))
  return s, den, r if where is None else jnp.where(where, r, 0.0)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def _stablemax_probs(xc, where, axis):
  """s / sum(s); own JVP dp = r dx - p <r, dx>, since autodiff of s / den forms den^-2, which
  underflows (then inf * 0 = NaN) for a row of logits all below about -1e19."""
  s, den, _ = _stablemax_parts(xc, where, axis)
  return s / den


@_stablemax_probs.defjvp
def _stablemax_probs_jvp(axis, primals, tangents):
  xc, where = primals
  dx, _ = tangents
  s, den, r = _stablemax_parts(xc, where, axis)
  p = s / den
  rdx = r * _safe_logits(dx, where)
  return p, rdx - p * jnp.sum(rdx, axis=axis, keepdims=True)


def sigmoid_attention(x, bias=None, axis: int = -1, where=None):
  """Sigmoid attention (Ramapuram et al., ICLR 2025): p_i = sigmoid(x_i + b), elementwise.

  Args:
    x: float logits, any shape.
    bias: None for b = -log n (n = the row's valid entries, so a uniform row sums to about 1), or a
      fixed bias (float, or an array broadcastable to x with `axis` kept).
    axis, where: as in `ops.softmax1`.
  Returns:
    x's shape and dtype. Rows are not normalised (each entry is in [0, 1]); a fully masked row is 0.
  """
  x, axis, where = _prepare(x, axis, where)
  ct = _compute_dtype(x.dtype)
  if bias is None:
    # max(n, 1): a fully masked row (n = 0) is zeroed below, and log 0 must not appear.
    b = -jnp.log(jnp.maximum(_valid_count(x.shape, axis, where, ct), 1.0))
  else:
    _checks.check_param(bias, "bias", lambda v: abs(v) < jnp.inf, "finite (or None for -log n)")
    b = jnp.asarray(bias, ct)
  p = jax.nn.sigmoid(_safe_logits(x.astype(ct), where) + b)
  if where is not None:
    p = jnp.where(where, p, 0.0)
  return p.astype(x.dtype)


def softplus_attention(x, axis: int = -1, where=None):
  """LSSA (Gao & Spratling, arXiv 2501.13428): p_i = softplus(log(n) x_i) / sum_j softplus(log(n) x_j).

  n is the row's number of valid entries: log n is the paper's entropy-invariant length scale.
  This is the paper's first stage (LSSA); its re-weighting stage (LSSAR) is not implemented.
  Computed as softmax(log softplus(log(n) x)) (the same l1 normalisation), which is exact where the
  softplus values underflow: a row of equal, very negative logits stays uniform (its limit), not 0/0,
  and the gradient never divides by a vanishing row sum. n = 1: log n = 0, p = 1 on the single key.
  """
  x, axis, where = _prepare(x, axis, where)
  ct = _compute_dtype(x.dtype)
  scale = jnp.log(jnp.maximum(_valid_count(x.shape, axis, where, ct), 1.0))
  # scale = 0 (n = 1) times a -inf logit would be NaN: feed 0 instead (softplus(0) for that key).
  z = scale * jnp.where(scale > 0, _safe_logits(x.astype(ct), where), 0.0)
  return softmax(log_softplus(z), axis=axis, where=where).astype(x.dtype)


def stablemax(x, axis: int = -1, where=None):
  """Stablemax (Prieto et al., 2025): p_i = s(x_i) / sum_j s(x_j), s as in `stablemax_score`.

  No exp, so large logits never overflow (s grows linearly: finite while sum_j s(x_j) < 3e38);
  -inf logits get s = 0. A fully masked row (or one of only -inf logits) is 0.
  """
  x, axis, where = _prepare(x, axis, where)
  ct = _compute_dtype(x.dtype)
  return _stablemax_probs(x.astype(ct), where, axis).astype(x.dtype)


def softpick(x, eps: float = SOFTPICK_EPS, axis: int = -1, where=None):
  """Softpick (Zuhri et al., 2025): p_i = relu(e^x_i - 1) / (sum_j |e^x_j - 1| + eps).

  Stable form with m = stop_gradient(max(max_j x_j, 0)) (the value is independent of m):
      p_i = relu(e^(x_i - m) - e^-m) / (sum_j |e^(x_j - m) - e^-m| + eps e^-m).
  Exactly 0 for x_i <= 0; a row sums to < 1 whenever some logit is negative (or eps > 0), so a head
  can attend to nothing without a sink. Masked entries are excluded from both sums.
  """
  _checks.check_param(eps, "eps", lambda v: (v >= 0) & (v < jnp.inf), "finite and >= 0")
  x, axis, where = _prepare(x, axis, where)
  ct = _compute_dtype(x.dtype)
  xc = _safe_logits(x.astype(ct), where)
  x_max = jnp.max(xc if where is None else jnp.where(where, xc, -jnp.inf), axis=axis, keepdims=True,
                  initial=-jnp.inf)  # -inf over a row of 0 entries (then m = 0)
  m = lax.stop_gradient(jnp.maximum(x_max, 0.0))  # the clamp at 0 keeps e^-m <= 1: no overflow
  c = jnp.exp(-m)
  d = jnp.exp(xc - m) - c
  num = jnp.where(xc > 0, jax.nn.relu(d), 0.0)  # exact zeros for x <= 0, whatever exp rounds to
  absd = jnp.abs(d) if where is None else jnp.where(where, jnp.abs(d), 0.0)
  den = jnp.sum(absd, axis=axis, keepdims=True) + eps * c
  p = num / jnp.where(den > 0, den, 1.0)
  if where is not None:
    p = jnp.where(where, p, 0.0)
  return p.astype(x.dtype)
