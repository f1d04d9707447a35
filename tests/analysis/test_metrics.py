"""Outlier metrics against closed forms and NumPy/SciPy-free float64 references."""
import jax.numpy as jnp
import numpy as np
import pytest

from outeffhop_jax import analysis as A


def test_kurtosis_of_gaussian_is_about_3():
  x = np.random.default_rng(0).normal(size=(4, 200_000))
  np.testing.assert_allclose(A.kurtosis(jnp.asarray(x, jnp.float32)), 3.0, atol=0.05)


def test_kurtosis_of_planted_vector_matches_closed_form():
  n, a = 64, 10.0
  x = np.zeros(n)
  x[7] = a
  # mean = a/n; fourth central moment = ((a - a/n)^4 + (n-1)(a/n)^4) / n; unbiased variance below.
  mu = a / n
  m4 = ((a - mu) ** 4 + (n - 1) * mu**4) / n
  var = ((a - mu) ** 2 + (n - 1) * mu**2) / (n - 1)
  expected = m4 / (var**2 + 1e-6)
  np.testing.assert_allclose(A.kurtosis(jnp.asarray(x[None], jnp.float32)), [expected], rtol=1e-4)
  assert expected > 50


def test_inf_norm_and_beyond_sigma():
  x = jnp.array([[1.0, -7.0, 2.0], [0.5, 0.25, -0.1]])
  np.testing.assert_allclose(A.inf_norm(x), [7.0, 0.5])
  big = np.zeros((1, 1000))
  big[0, :3] = 100.0
  np.testing.assert_allclose(A.beyond_sigma_fraction(jnp.asarray(big)), [3 / 1000])


def test_rows_and_aggregation():
  x = jnp.arange(24.0).reshape(2, 3, 4)
  assert A.as_rows(x).shape == (2, 12) and A.as_rows(x, per="token").shape == (6, 4)
  summary = A.aggregate({"a": {"kurtosis": 3.0, "inf_norm": 5.0}, "b": {"kurtosis": 9.0, "inf_norm": 2.0}})
  assert summary["avg_kurtosis"] == 6.0 and summary["max_inf_norm"] == 5.0
  assert summary["max_kurtosis_module"] == "b" and summary["max_inf_norm_module"] == "a"


def test_sink_rate_and_top_dims():
  p = np.full((2, 4, 5, 5), 0.1)
  p[:, 1, :, 0] = 0.9  # head 1 dumps on the first token
  assert float(A.sink_rate(jnp.asarray(p))) == pytest.approx(0.25)
  x = np.ones((3, 6))
  x[1, 4] = -50
  idx, val = A.top_dims(x, k=2)
  assert idx[0] == 4 and val[0] == 50


@pytest.mark.parametrize("bad", [jnp.ones(3), jnp.ones((2, 2, 2))])
def test_bad_shapes(bad):
  with pytest.raises(ValueError, match=r"\[rows, features\]"):
    A.kurtosis(bad)
