"""The sort-free sparsemax / Newton entmax against the algorithms they replaced (a full sort of
every row; 50 bisection steps), kept here as references: values and gradients (in x and in alpha) on
adversarial rows. test_sparse.py checks both against float64 NumPy and finite differences."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import outeffhop_jax as oe


def _sort_reference_sparsemax(x):
  """The former sparsemax: sorted cumulative sums (Held et al.), support-projected tangent."""
  @jax.custom_jvp
  def f(x):
    z = jnp.sort(x, axis=-1)[..., ::-1]
    k = jnp.arange(1, x.shape[-1] + 1, dtype=x.dtype)
    cumsum = jnp.cumsum(z, axis=-1)
    k_max = jnp.sum(1 + k * z > cumsum, axis=-1, keepdims=True)
    tau = (jnp.take_along_axis(cumsum, k_max - 1, axis=-1) - 1) / k_max.astype(x.dtype)
    return jnp.maximum(x - tau, 0.0)

  @f.defjvp
  def f_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    p = f(x)
    s = (p > 0).astype(x.dtype)
    return p, s * (dx - jnp.sum(s * dx, -1, keepdims=True) / jnp.sum(s, -1, keepdims=True))

  return f(x.astype(jnp.float32))


def _bisect_reference_entmax(x, alpha):
  """The former entmax: 50 bisection steps on tau, then the closed-form backward (Peters et al.
  2019, Correia et al. 2019) for x and alpha; alpha broadcast over the reduced shape."""
  x = x.astype(jnp.float32)
  alpha = jnp.broadcast_to(jnp.asarray(alpha, jnp.float32), x.shape[:-1])[..., None]

  def forward(x, alpha):
    am1 = alpha - 1.0
    xs = x * am1
    mx = jnp.max(xs, -1, keepdims=True)
    lo, hi = mx - 1.0, mx - (1.0 / x.shape[-1]) ** am1
    p_of = lambda tau: jnp.maximum(xs - tau, 0.0) ** (1.0 / am1)
    def body(_, bounds):
      lo, hi = bounds
      mid = (lo + hi) / 2
      up = jnp.sum(p_of(mid), -1, keepdims=True) >= 1.0
      return jnp.where(up, mid, lo), jnp.where(up, hi, mid)

    lo, hi = jax.lax.fori_loop(0, 50, body, (lo, hi))
    p = p_of((lo + hi) / 2)
    return p / jnp.sum(p, -1, keepdims=True)

  @jax.custom_vjp
  def f(x, alpha):
    return forward(x, alpha)

  def fwd(x, alpha):
    p = forward(x, alpha)
    return p, (p, alpha)

  def bwd(res, dp):
    p, alpha = res
    g = jnp.where(p > 0, p ** (2.0 - alpha), 0.0)
    g_sum = jnp.sum(g, -1, keepdims=True)
    dx = g * dp - jnp.sum(g * dp, -1, keepdims=True) / g_sum * g
    am1 = alpha - 1.0
    plogp = jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0)
    g_norm = g / g_sum
    dp_da = (p - g_norm) / am1**2 - (plogp - g_norm * jnp.sum(plogp, -1, keepdims=True)) / am1
    return dx, jnp.sum(dp * dp_da, -1, keepdims=True)

  f.defvjp(fwd, bwd)
  return f(x, alpha)


def _rows(d=12):
  rng = np.random.default_rng(0)
  r = [rng.normal(size=d) * 3, rng.normal(size=d) * 0.01, np.ones(d), np.eye(d)[3] * 5,
       np.eye(d)[0] * 1e4, np.where(np.arange(d) % 2, 1e4, -1e4), rng.normal(size=d) * 1e4,
       np.repeat([2.0, 1.0, 0.0, -1.0], d // 4),                 # ties, also at the threshold
       np.array([1.0, 1.0, 0.5, 0.5] + [0.0] * (d - 4)),
       np.where(np.arange(d) < 5, -np.inf, rng.normal(size=d)),   # masked entries
       np.where(np.arange(d) == 7, 3.0, -np.inf)]                 # one unmasked entry
  return np.stack(r)


X = _rows()
W = np.random.default_rng(1).normal(size=X.shape)


def _assert_close(a, b, atol):
  np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), atol=atol,
                             rtol=0)


def test_sparsemax_matches_sort_reference_values_and_gradients():
  x, w = jnp.asarray(X, jnp.float32), jnp.asarray(W, jnp.float32)
  _assert_close(oe.sparsemax(x), _sort_reference_sparsemax(x), 1e-6)
  g = jax.grad(lambda x: jnp.vdot(jnp.where(jnp.isfinite(x), oe.sparsemax(x), 0), w))(x)
  g_ref = jax.grad(lambda x: jnp.vdot(jnp.where(jnp.isfinite(x), _sort_reference_sparsemax(x), 0),
                                      w))(x)
  _assert_close(g, g_ref, 1e-6)
  dx = jnp.asarray(np.where(np.isfinite(X), W[::-1], 0.0), jnp.float32)
  _assert_close(jax.jvp(oe.sparsemax, (x,), (dx,))[1],
                jax.jvp(_sort_reference_sparsemax, (x,), (dx,))[1], 1e-6)


@pytest.mark.parametrize("alpha", [1.1, 1.5, 1.8, 2.0])
def test_entmax_matches_bisection_reference_values_and_gradients(alpha):
  x, w = jnp.asarray(X, jnp.float32), jnp.asarray(W, jnp.float32)
  _assert_close(oe.entmax(x, alpha), _bisect_reference_entmax(x, alpha), 1e-6)
  loss = lambda f: lambda x, a: jnp.vdot(f(x, a), w)
  gx, ga = jax.grad(loss(oe.entmax), (0, 1))(x, jnp.float32(alpha))
  gx_ref, ga_ref = jax.grad(loss(_bisect_reference_entmax), (0, 1))(x, jnp.float32(alpha))
  _assert_close(gx, gx_ref, 1e-5)
  np.testing.assert_allclose(ga, ga_ref, rtol=1e-4, atol=1e-5)


def test_learnable_alpha_per_row_and_gsh_normalizer_match_reference():
  """The GSH layer's normalizer: a traced alpha, one per row, its gradient summed as the layer's."""
  x, w = jnp.asarray(X[:8], jnp.float32), jnp.asarray(W[:8], jnp.float32)
  a = jnp.linspace(1.2, 1.9, 8, dtype=jnp.float32)
  from outeffhop_jax.nn import gsh
  norm = lambda x, a: gsh.learned_entmax(a)(x, axis=-1)
  ref = _bisect_reference_entmax
  _assert_close(norm(x, a), ref(x, a), 1e-6)
  g = jax.grad(lambda a: jnp.vdot(norm(x, a), w))(a)
  g_ref = jax.grad(lambda a: jnp.vdot(ref(x, a), w))(a)
  np.testing.assert_allclose(g, g_ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_low_precision_inputs_compute_in_float32(dtype):
  x = jnp.asarray(X[:4] * 0.5, dtype)  # finite, representable rows
  xf = x.astype(jnp.float32)
  p = oe.sparsemax(x)
  assert p.dtype == dtype
  _assert_close(p, _sort_reference_sparsemax(xf).astype(dtype), 0)
  q = oe.entmax(x, 1.5)
  assert q.dtype == dtype
  _assert_close(q, _bisect_reference_entmax(xf, 1.5).astype(dtype), float(jnp.finfo(dtype).eps))


def test_large_random_rows_match_reference():
  """Many wide rows (the attention shape) exercise the multi-pass convergence of every row."""
  x = jax.random.normal(jax.random.key(0), (64, 256)) * jnp.linspace(0.01, 30, 64)[:, None]
  # p = x - tau carries the rounding of x itself: 1e-6 relative to the row's largest logit (>= 1)
  tol = 1e-6 * np.maximum(1.0, np.abs(np.asarray(x)).max(-1, keepdims=True))
  assert (np.abs(oe.sparsemax(x) - _sort_reference_sparsemax(x)) <= tol).all()
  assert (np.abs(oe.entmax(x, 1.5) - _bisect_reference_entmax(x, 1.5)) <= tol / 2).all()
