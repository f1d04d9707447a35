"""Softmax_1, sink softmax, logsumexp1 and clipped softmax against independent references."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import outeffhop_jax as oe


def naive_softmax1(x, axis=-1):
  """softmax over [x, 0] with the extra entry dropped, in float64 NumPy."""
  x = np.moveaxis(np.asarray(x, np.float64), axis, -1)
  full = np.concatenate([x, np.zeros(x.shape[:-1] + (1,))], axis=-1)
  full = full - full.max(axis=-1, keepdims=True)
  e = np.exp(full)
  p = (e / e.sum(axis=-1, keepdims=True))[..., :-1]
  return np.moveaxis(p, -1, axis)


def wrong_max_shift(x):
  """Seen in the wild: the sink sits at the row max instead of at 0."""
  e = jnp.exp(x - jnp.max(x, axis=-1, keepdims=True))
  return e / (1 + jnp.sum(e, axis=-1, keepdims=True))


def wrong_no_clamp(x):
  """Seen in the wild: shift by the max without clamping it at 0."""
  m = jnp.max(x, axis=-1, keepdims=True)
  e = jnp.exp(x - m)
  return e / (jnp.exp(-m) + jnp.sum(e, axis=-1, keepdims=True))


ADVERSARIAL = {
    "random": np.random.default_rng(0).normal(size=(4, 7)) * 3,
    "huge": np.array([[1e4, 1e4 - 1, -1e4], [-1e4, 1e4, 0.0]]),
    "all_below_minus_100": np.array([[-100.0, -150.0, -300.0], [-1e3, -2e3, -101.0]]),
    "mixed_sign": np.array([[30.0, -30.0, 0.0], [88.0, 89.0, 90.0]]),
}


@pytest.mark.parametrize("name", list(ADVERSARIAL))
def test_softmax1_equals_softmax_with_extra_zero_logit(name):
  x = ADVERSARIAL[name]
  np.testing.assert_allclose(oe.softmax1(jnp.asarray(x, jnp.float32)), naive_softmax1(x),
                             rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("dtype,tol", [(jnp.float32, 1e-6), (jnp.bfloat16, 1e-2), (jnp.float16, 2e-3)])
def test_softmax1_low_precision_finite_and_close(dtype, tol):
  x = np.array([[1e4, -1e4, 0.0, 3.0], [-200, -300, -1e4, -1e3], [5.0, 4.0, 3.0, 2.0]])
  if dtype == jnp.float16:
    x = np.clip(x, -6e4, 6e4)
  xd = jnp.asarray(x, dtype)
  p = oe.softmax1(xd)
  assert p.dtype == dtype
  assert np.isfinite(np.asarray(p, np.float32)).all()
  np.testing.assert_allclose(np.asarray(p, np.float32), naive_softmax1(np.asarray(xd, np.float32)),
                             atol=tol)
  g = jax.grad(lambda x: jnp.sum(oe.softmax1(x).astype(jnp.float32) ** 2))(xd)
  assert np.isfinite(np.asarray(g, np.float32)).all()


def test_softmax1_with_neg_inf_entries():
  x = jnp.array([[-jnp.inf, 0.0, 1.0], [-jnp.inf, -jnp.inf, -jnp.inf]])
  p = oe.softmax1(x)
  np.testing.assert_allclose(p[0], naive_softmax1(np.array([[-1e30, 0.0, 1.0]]))[0], rtol=1e-6)
  np.testing.assert_array_equal(p[1], 0.0)
  g = jax.grad(lambda x: jnp.sum(oe.softmax1(x) * jnp.arange(3.0)))(x)
  assert np.isfinite(g).all()


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
def test_fully_masked_row_is_exactly_zero_with_zero_gradient(dtype):
  x = jnp.asarray(np.random.default_rng(1).normal(size=(3, 5)), dtype)
  where = jnp.array([[True] * 5, [False] * 5, [True, False, True, False, False]])
  p = oe.softmax1(x, where=where)
  np.testing.assert_array_equal(np.asarray(p[1], np.float32), 0.0)
  assert (np.asarray(p[2], np.float32)[[1, 3, 4]] == 0).all()
  g = jax.grad(lambda x: jnp.sum(oe.softmax1(x, where=where).astype(jnp.float32) * 2.0))(x)
  np.testing.assert_array_equal(np.asarray(g[1], np.float32), 0.0)
  assert np.isfinite(np.asarray(g, np.float32)).all()
  # Plain softmax through the registry also gives 0 (not NaN / uniform) on a fully masked row.
  ps = oe.get_normalizer("softmax")(x, where=where)
  np.testing.assert_array_equal(np.asarray(ps[1], np.float32), 0.0)


def test_the_two_wrong_forms_fail_the_checks_ours_passes():
  x = jnp.array([[2.0, 1.0, 0.5]])
  # Sink at the row max: different values from softmax([x, 0]).
  assert np.abs(np.asarray(wrong_max_shift(x)) - naive_softmax1(x)).max() > 1e-2
  np.testing.assert_allclose(oe.softmax1(x), naive_softmax1(x), rtol=1e-6)
  # No clamp at 0: every logit below about -88 gives a NaN gradient in float32.
  low = jnp.full((1, 4), -120.0)
  g_wrong = jax.grad(lambda x: jnp.sum(wrong_no_clamp(x) * jnp.arange(4.0)))(low)
  assert not np.isfinite(g_wrong).all()
  g_ours = jax.grad(lambda x: jnp.sum(oe.softmax1(x) * jnp.arange(4.0)))(low)
  assert np.isfinite(g_ours).all()


def test_grad_logsumexp1_is_softmax1_and_value():
  x = jnp.asarray(np.random.default_rng(2).normal(size=(3, 6)) * 4, jnp.float32)
  np.testing.assert_allclose(jax.grad(lambda x: oe.logsumexp1(x).sum())(x), oe.softmax1(x),
                             rtol=1e-5, atol=1e-7)
  ref = np.logaddexp(0.0, jax.scipy.special.logsumexp(x, axis=-1))
  np.testing.assert_allclose(oe.logsumexp1(x), ref, rtol=1e-6)
  np.testing.assert_allclose(oe.logsumexp1(jnp.full((2,), -1e4)), 0.0, atol=1e-6)


def test_softmax1_is_sigmoid_lse_times_softmax():
  x = jnp.asarray(np.random.default_rng(3).normal(size=(5, 9)) * 5, jnp.float32)
  ref = jax.nn.sigmoid(jax.scipy.special.logsumexp(x, axis=-1, keepdims=True)) * jax.nn.softmax(x)
  np.testing.assert_allclose(oe.softmax1(x), ref, rtol=1e-5, atol=1e-7)


def test_softmax1_along_other_axis():
  x = np.random.default_rng(4).normal(size=(3, 4, 5))
  np.testing.assert_allclose(oe.softmax1(jnp.asarray(x, jnp.float32), axis=1),
                             naive_softmax1(x, axis=1), rtol=1e-5)


def test_sink_zero_is_softmax1_and_log_n_is_softmax_n():
  x = jnp.asarray(np.random.default_rng(5).normal(size=(4, 6)), jnp.float32)
  np.testing.assert_allclose(oe.softmax_with_sink(x, 0.0), oe.softmax1(x), rtol=1e-6)
  n = 3.0
  e = np.exp(np.asarray(x, np.float64))
  np.testing.assert_allclose(oe.softmax_with_sink(x, math.log(n)), e / (n + e.sum(-1, keepdims=True)),
                             rtol=1e-5)
  np.testing.assert_allclose(oe.get_normalizer("softmax_n:3")(x), e / (n + e.sum(-1, keepdims=True)),
                             rtol=1e-5)


def test_per_row_sink_broadcast_and_gradient_matches_finite_differences():
  rng = np.random.default_rng(6)
  x = jnp.asarray(rng.normal(size=(2, 3, 5)), jnp.float32)
  sink_3 = jnp.asarray(rng.normal(size=(3,)), jnp.float32)  # broadcast against the reduced [2, 3]
  w = jnp.asarray(rng.normal(size=(2, 3, 5)), jnp.float32)
  f = lambda s: jnp.sum(oe.softmax_with_sink(x, s) * w)
  g = jax.grad(f)(sink_3)
  eps = 1e-3
  fd = np.array([(f(sink_3.at[i].add(eps)) - f(sink_3.at[i].add(-eps))) / (2 * eps) for i in range(3)])
  np.testing.assert_allclose(g, fd, rtol=2e-2, atol=2e-4)
  # The design's formula: ds = -sum_rows p_sink <p, dp> with dp = w.
  p = oe.softmax_with_sink(x, sink_3)
  p_sink = 1 - p.sum(-1)
  np.testing.assert_allclose(g, -(p_sink * (p * w).sum(-1)).sum(0), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("fn", [
    oe.softmax1,
    oe.get_normalizer("softmax"),
    lambda x: oe.softmax_with_sink(x, 0.7),
    lambda x: oe.clipped_softmax(x, -0.1, 1.1),
    lambda x: oe.clipped_softmax1(x, -0.1, 1.1),
    lambda x: oe.logsumexp1(x),
])
def test_check_grads_order_2(fn):
  x = jnp.asarray(np.random.default_rng(7).normal(size=(3, 5)), jnp.float32)
  # Moderate values keep the clipped normalizers away from their kinks for the finite differences.
  check_grads(fn, (x * 0.3,), order=2, modes=("fwd", "rev"), atol=1e-2, rtol=1e-2)


def test_check_grads_sink_argument():
  x = jnp.asarray(np.random.default_rng(8).normal(size=(3, 5)), jnp.float32)
  check_grads(lambda s: oe.softmax_with_sink(x, s), (jnp.array([0.1, -0.3, 0.5]),), order=2,
              modes=("fwd", "rev"), atol=1e-2, rtol=1e-2)


def test_clipped_identity_and_exact_zeros():
  x = jnp.asarray(np.random.default_rng(9).normal(size=(4, 8)) * 3, jnp.float32)
  np.testing.assert_allclose(oe.clipped_softmax(x, 0.0, 1.0), jax.nn.softmax(x), rtol=1e-6, atol=1e-7)
  gamma, zeta = -0.05, 1.0
  p = np.asarray(jax.nn.softmax(x))
  out = np.asarray(oe.clipped_softmax(x, gamma, zeta))
  below = p < -gamma / (zeta - gamma)
  assert below.any()
  np.testing.assert_array_equal(out[below], 0.0)
  np.testing.assert_allclose(out[~below], np.clip((zeta - gamma) * p[~below] + gamma, 0, 1), rtol=1e-5)
  p1 = np.asarray(oe.softmax1(x))
  out1 = np.asarray(oe.clipped_softmax1(x, gamma, zeta))
  np.testing.assert_allclose(out1, np.clip((zeta - gamma) * p1 + gamma, 0, 1), rtol=1e-5, atol=1e-7)


def test_clipped_masked_entries_are_zero():
  x = jnp.ones((2, 4))
  where = jnp.array([[True, True, False, False], [False] * 4])
  out = oe.clipped_softmax(x, -0.01, 1.02, where=where)
  np.testing.assert_array_equal(out[0, 2:], 0.0)
  np.testing.assert_array_equal(out[1], 0.0)


@pytest.mark.parametrize("call,match", [
    (lambda: oe.softmax1(jnp.arange(3)), "x must be a floating"),
    (lambda: oe.softmax1(jnp.ones((2, 3)), axis=2), "axis=2"),
    (lambda: oe.softmax1(jnp.ones((2, 3)), where=jnp.ones((4,), bool)), "where"),
    (lambda: oe.softmax_with_sink(jnp.ones((2, 3)), jnp.ones((5,))), "sink"),
    (lambda: oe.clipped_softmax(jnp.ones(3), 0.5), "gamma"),
    (lambda: oe.clipped_softmax1(jnp.ones(3), -0.1, 0.5), "zeta"),
])
def test_bad_input_names_the_argument(call, match):
  with pytest.raises((ValueError, TypeError), match=match):
    call()
