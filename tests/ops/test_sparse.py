"""sparsemax and alpha-entmax: simplex, exact zeros, limits and gradients."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import outeffhop_jax as oe


def naive_sparsemax(z):
  """Projection onto the simplex by sorting (Held et al.), one row at a time in float64."""
  out = []
  for row in np.asarray(z, np.float64).reshape(-1, z.shape[-1]):
    u = np.sort(row)[::-1]
    css = np.cumsum(u)
    k = np.arange(1, len(u) + 1)
    rho = k[u - (css - 1) / k > 0][-1]
    tau = (css[rho - 1] - 1) / rho
    out.append(np.maximum(row - tau, 0))
  return np.array(out).reshape(z.shape)


def naive_entmax(z, alpha):
  """alpha-entmax by a float64 bisection on tau, written independently of the library."""
  z = np.asarray(z, np.float64) * (alpha - 1)
  out = []
  for row in z.reshape(-1, z.shape[-1]):
    lo, hi = row.max() - 1.0, row.max()
    for _ in range(200):
      mid = (lo + hi) / 2
      s = (np.maximum(row - mid, 0) ** (1 / (alpha - 1))).sum()
      lo, hi = (mid, hi) if s > 1 else (lo, mid)
    out.append(np.maximum(row - lo, 0) ** (1 / (alpha - 1)))
  return np.array(out).reshape(z.shape)


X = np.random.default_rng(0).normal(size=(6, 10)) * 2


def test_sparsemax_matches_naive_and_is_on_simplex_with_zeros():
  p = np.asarray(oe.sparsemax(jnp.asarray(X, jnp.float32)))
  np.testing.assert_allclose(p, naive_sparsemax(X), atol=1e-6)
  np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-6)
  assert (p >= 0).all() and (p == 0).any()


@pytest.mark.parametrize("alpha", [1.25, 1.5, 1.8])
def test_entmax_matches_naive(alpha):
  p = np.asarray(oe.entmax(jnp.asarray(X, jnp.float32), alpha))
  np.testing.assert_allclose(p, naive_entmax(X, alpha), atol=2e-5)
  np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-5)
  assert (p == 0).any()


def test_entmax_limits():
  x = jnp.asarray(X, jnp.float32)
  np.testing.assert_allclose(oe.entmax(x, 2.0), oe.sparsemax(x), atol=1e-5)
  np.testing.assert_allclose(oe.entmax(x, 1.001), jax.nn.softmax(x), atol=5e-3)


def test_entmax_other_axis_and_bf16():
  x = np.random.default_rng(1).normal(size=(4, 5, 3))
  p = oe.entmax(jnp.asarray(x, jnp.bfloat16), 1.5, axis=1)
  assert p.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(p, np.float32),
                             np.moveaxis(naive_entmax(np.moveaxis(x, 1, -1), 1.5), -1, 1), atol=2e-2)


def test_sparse_gradients_check_grads():
  x = jnp.asarray(np.random.default_rng(2).normal(size=(3, 6)), jnp.float32)
  check_grads(lambda x: oe.sparsemax(x), (x,), order=2, modes=("fwd", "rev"), atol=1e-2, rtol=1e-2)
  check_grads(lambda x: oe.entmax(x, 1.5), (x,), order=1, modes=("rev",), atol=1e-2, rtol=1e-2)


def test_entmax_gradient_in_x_and_alpha_match_finite_differences():
  rng = np.random.default_rng(3)
  x = jnp.asarray(rng.normal(size=(8,)), jnp.float64 if jax.config.x64_enabled else jnp.float32)
  w = jnp.asarray(rng.normal(size=(8,)), x.dtype)
  f = lambda x, a: jnp.sum(oe.entmax(x, a) * w)
  gx, ga = jax.grad(f, argnums=(0, 1))(x, jnp.float32(1.5))
  eps = 1e-3
  fd_a = (f(x, 1.5 + eps) - f(x, 1.5 - eps)) / (2 * eps)
  np.testing.assert_allclose(ga, fd_a, rtol=3e-2, atol=1e-3)
  fd_x = np.array([(f(x.at[i].add(eps), 1.5) - f(x.at[i].add(-eps), 1.5)) / (2 * eps) for i in range(8)])
  np.testing.assert_allclose(gx, fd_x, rtol=3e-2, atol=2e-3)


def test_entmax_rejects_bad_alpha():
  with pytest.raises(ValueError, match="alpha"):
    oe.entmax(jnp.ones(3), 2.5)
  with pytest.raises(ValueError, match="alpha"):
    oe.entmax(jnp.ones(3), 1.0)
