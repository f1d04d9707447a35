"""Sigmoid, softplus (LSSA), stablemax, softpick: naive float64 formulas, edge cases, registry."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import outeffhop_jax as oe

SPECS = ["sigmoid", "sigmoid:-1.5", "softplus", "stablemax", "softpick", "softpick:0.01"]


def _rng_x(shape, seed=0, scale=2.0):
  return np.random.default_rng(seed).normal(size=shape) * scale


@pytest.mark.parametrize("spec", SPECS)
def test_matches_naive_formula_with_and_without_mask(spec, naive):
  x = _rng_x((3, 4, 7))
  where = np.random.default_rng(1).random((3, 4, 7)) < 0.7
  where[0, 0] = False           # a fully masked row
  where[0, 1] = [True] + [False] * 6  # a single valid key (log n = 0 for softplus)
  norm = oe.get_normalizer(spec)
  np.testing.assert_allclose(norm(jnp.asarray(x, jnp.float32)), naive(spec, x), rtol=2e-5,
                             atol=1e-7)
  p = np.asarray(norm(jnp.asarray(x, jnp.float32), where=jnp.asarray(where)))
  np.testing.assert_allclose(p, naive(spec, x, where), rtol=2e-5, atol=1e-7)
  assert (p[~where] == 0).all() and (p[0, 0] == 0).all()
  # Along another axis: the same as moving that axis last.
  p0 = norm(jnp.asarray(x, jnp.float32), axis=0)
  np.testing.assert_allclose(np.moveaxis(np.asarray(p0), 0, -1), naive(spec, np.moveaxis(x, 0, -1)),
                             rtol=2e-5, atol=1e-7)


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
def test_adversarial_logits_finite_values_and_gradients(spec, dtype):
  norm = oe.get_normalizer(spec)
  x = jnp.array([[1e4, -1e4, 0.0, 1.0, -jnp.inf],
                 [-1e4, -1e4, -1e4, -1e4, -1e4],
                 [1e4, 1e4, 1e4, 1e4, 1e4],
                 [-jnp.inf, -jnp.inf, 2.0, -jnp.inf, -jnp.inf],
                 [3.0, -2.0, 0.5, 1e4, -1e4]], dtype)
  where = jnp.array([[True] * 5, [True] * 5, [True] * 5, [True] * 5, [False] * 5])
  w = jnp.asarray(_rng_x((5, 5), 3), jnp.float32)
  for mask in (None, where):
    p = norm(x, where=mask)
    assert p.dtype == dtype
    assert np.isfinite(np.asarray(p, np.float32)).all(), (spec, mask is None)
    g = jax.grad(lambda x: jnp.sum(norm(x, where=mask).astype(jnp.float32) * w))(x)
    assert np.isfinite(np.asarray(g, np.float32)).all(), (spec, mask is None)
  p = np.asarray(norm(x, where=where), np.float32)
  np.testing.assert_array_equal(p[4], 0.0)  # the fully masked row
  assert (p >= 0).all()


@pytest.mark.parametrize("spec", ["sigmoid", "softplus", "stablemax", "softpick"])
def test_check_grads_order_2(spec):
  norm = oe.get_normalizer(spec)
  # Logits away from 0, where stablemax's second derivative and softpick's relu have their kinks.
  x = _rng_x((2, 6), 4, 1.0)
  x = jnp.asarray(np.sign(x) * (0.3 + np.abs(x)), jnp.float32)
  where = jnp.array([[True] * 6, [True, False, True, True, False, True]])
  # One jitted function for both rows (op-by-op dispatch of the order-2 checks is slow).
  f = jax.jit(lambda x: jnp.stack([norm(x[0]), norm(x[1], where=where[1])]))
  check_grads(f, (x,), order=2, modes=("fwd", "rev"), atol=1e-2, rtol=1e-2)


@pytest.mark.parametrize("n", [1, 2, 7, 64, 1000])
def test_sigmoid_uniform_rows_sum_to_about_one(n):
  # sigmoid(0 - log n) = 1 / (1 + n): a row of n equal logits sums to n / (n + 1).
  p = np.asarray(oe.sigmoid_attention(jnp.zeros((n,))), np.float64)
  assert p.sum() == pytest.approx(n / (n + 1), rel=1e-5)
  if n >= 64:
    assert abs(p.sum() - 1) < 0.02


def test_sigmoid_causal_rows_use_their_own_length():
  T = 16
  causal = np.tril(np.ones((T, T), bool))
  p = np.asarray(oe.get_normalizer("sigmoid")(jnp.zeros((T, T)), where=jnp.asarray(causal)))
  t = np.arange(T)
  np.testing.assert_allclose(p.sum(-1), (t + 1) / (t + 2), rtol=1e-5)
  # A fixed bias ignores the length.
  p = np.asarray(oe.get_normalizer("sigmoid:0")(jnp.zeros((T, T)), where=jnp.asarray(causal)))
  np.testing.assert_allclose(p.sum(-1), 0.5 * (t + 1), rtol=1e-6)


def test_stablemax_sums_to_one_and_survives_1e30():
  x = jnp.asarray(_rng_x((4, 9), 5, 3.0), jnp.float32)
  np.testing.assert_allclose(oe.stablemax(x).sum(-1), 1.0, rtol=1e-6)
  big = jnp.array([[1e30, -1e30, 0.0, 1e30], [-1e30, -1e30, -1e30, -1e30]], jnp.float32)
  p = np.asarray(oe.stablemax(big))
  assert np.isfinite(p).all()
  np.testing.assert_allclose(p.sum(-1), 1.0, rtol=1e-6)
  np.testing.assert_allclose(p[0], [0.5, 0.0, 0.0, 0.5], atol=1e-7)
  np.testing.assert_allclose(p[1], 0.25, rtol=1e-6)  # equal logits: uniform, however negative
  g = jax.grad(lambda x: jnp.sum(oe.stablemax(x) * jnp.arange(4.0)))(big)
  assert np.isfinite(g).all()


def test_softpick_exact_zeros_and_rows_below_one():
  x = jnp.array([[2.0, -0.5, 1.0, -3.0, 0.0], [-1.0, -2.0, -0.1, -5.0, -jnp.inf]])
  p = np.asarray(oe.softpick(x))
  assert (p[0, [1, 3, 4]] == 0.0).all() and (p[0, [0, 2]] > 0).all()
  assert p[0].sum() < 1.0 and p[1].sum() == 0.0  # no positive logit: the head attends to nothing
  # With only positive logits and eps = 0 the row sums to exactly 1 (up to rounding).
  np.testing.assert_allclose(oe.softpick(jnp.array([1.0, 2.0, 0.5]), eps=0.0).sum(), 1.0,
                             rtol=1e-6)


def test_softplus_single_key_and_underflow():
  # n = 1: log n = 0, the single key gets everything, even at -inf.
  p = oe.softplus_attention(jnp.array([[-jnp.inf], [3.0]]))
  np.testing.assert_array_equal(p, [[1.0], [1.0]])
  # Every softplus underflows (float64 too): softplus(z) ~ e^z, so the ratios are those of e^z --
  # uniform for equal logits, softmax(log(n) x) for unequal ones -- with finite gradients.
  p = oe.softplus_attention(jnp.full((2, 8), -1e4))
  np.testing.assert_allclose(p, 0.125, rtol=1e-6)
  x = jnp.array([-200.0, -201.0, -199.5, -1e4])
  want = np.exp(np.log(4) * (np.asarray(x, np.float64) + 200))
  np.testing.assert_allclose(oe.softplus_attention(x), want / want.sum(), rtol=1e-5, atol=1e-30)
  g = jax.grad(lambda x: jnp.sum(oe.softplus_attention(x) * jnp.arange(4.0)))(x)
  assert np.isfinite(g).all() and np.abs(g).max() > 0


def test_registry_fields_and_bad_specs():
  assert oe.get_normalizer("sigmoid").kind == "elementwise"
  assert oe.get_normalizer("sigmoid").bias is None
  assert oe.get_normalizer("sigmoid:-2.5").bias == -2.5
  assert oe.get_normalizer("sigmoid:-2.5").spec == "sigmoid:-2.5"
  for name in ("softplus", "stablemax", "softpick"):
    norm = oe.get_normalizer(name)
    assert (norm.kind, norm.score, norm.sink) == ("l1", name, None)
  assert oe.get_normalizer("softpick").eps == 1e-6
  assert oe.get_normalizer("softpick:0.001").eps == 0.001
  for bad in ("sigmoid:abc", "sigmoid:inf", "sigmoid:1:2", "softpick:-1", "softpick:nan",
              "softplus:3", "stablemax:1", "softpik"):
    with pytest.raises(ValueError, match=f"'{bad}'"):
      oe.get_normalizer(bad)


def test_kind_guards_name_the_normalizer(naive):
  q, mem = jnp.ones((3, 4)), jnp.asarray(_rng_x((5, 4), 6), jnp.float32)
  for spec in ("sigmoid", "softplus", "stablemax", "softpick"):
    norm = oe.get_normalizer(spec)
    with pytest.raises(ValueError, match=f"sinks .*'{spec}'"):
      norm.with_sinks(0.0)
    with pytest.raises(ValueError, match=f"Hopfield energy .*'{spec}'"):
      oe.hopfield_energy(q, mem, beta=1.0, normalizer=spec)
    # The retrieval update is defined for any normalizer: Xi^T p(beta Xi x).
    want = naive(spec, np.asarray(q, np.float64) @ np.asarray(mem, np.float64).T) @ np.asarray(mem)
    np.testing.assert_allclose(oe.hopfield_update(q, mem, beta=1.0, normalizer=spec), want,
                               rtol=1e-5, atol=1e-6)


def test_log_n_uses_the_valid_count():
  # softplus with n valid of 6: scale log n, not log 6.
  x = _rng_x((6,), 7)
  where = np.array([True, True, True, False, False, True])
  p = np.asarray(oe.softplus_attention(jnp.asarray(x, jnp.float32), where=jnp.asarray(where)))
  s = np.log1p(np.exp(math.log(4) * x[where]))
  np.testing.assert_allclose(p[where], s / s.sum(), rtol=2e-5)
