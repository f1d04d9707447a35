"""The fake quantizer: error bound, clipping, exact zero, frozen ranges."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from outeffhop_jax import analysis as A


@pytest.mark.parametrize("symmetric,bits", [(False, 8), (True, 8), (False, 6), (True, 4)])
def test_error_within_half_step_inside_range_and_clipping_outside(symmetric, bits):
  lo, hi = (-3.0, 5.0)
  x = jnp.linspace(-6.0, 9.0, 5001)
  xq = A.fake_quant(x, num_bits=bits, symmetric=symmetric, x_min=lo, x_max=hi)
  if symmetric:
    delta = 5.0 / (2 ** (bits - 1) - 1)
    rep_lo, rep_hi = -(2 ** (bits - 1)) * delta, 5.0
  else:
    delta = 8.0 / (2**bits - 1)
    zero = np.round(3.0 / delta)
    rep_lo, rep_hi = -zero * delta, (2**bits - 1 - zero) * delta
  inside = (x >= rep_lo) & (x <= rep_hi)
  assert np.abs(np.asarray(xq - x))[np.asarray(inside)].max() <= delta / 2 + 1e-6
  np.testing.assert_allclose(np.asarray(xq)[np.asarray(x > rep_hi + delta)], rep_hi, rtol=1e-6)
  np.testing.assert_allclose(np.asarray(xq)[np.asarray(x < rep_lo - delta)], rep_lo, rtol=1e-6)
  # Number of distinct levels never exceeds the grid.
  assert len(np.unique(np.asarray(xq))) <= 2**bits


@pytest.mark.parametrize("lo,hi", [(0.3, 7.0), (-5.0, -0.2), (-1.3, 2.7)])
def test_zero_is_exactly_representable(lo, hi):
  xq = A.fake_quant(jnp.zeros(4), num_bits=8, symmetric=False, x_min=lo, x_max=hi)
  np.testing.assert_array_equal(xq, 0.0)


def test_straight_through_gradient():
  g = jax.grad(lambda x: jnp.sum(A.fake_quant(x, num_bits=8, symmetric=True, x_min=-1, x_max=1)))(
      jnp.array([0.1, 0.5]))
  np.testing.assert_allclose(g, 1.0)


def test_running_minmax_momentum_and_frozen_after_calibration():
  state = (jnp.float32(0), jnp.float32(0), jnp.asarray(False))
  state = A.update_range(state, jnp.array([-1.0, 2.0]))
  np.testing.assert_allclose(state[:2], (-1.0, 2.0))
  state = A.update_range(state, jnp.array([-11.0, 12.0]))
  np.testing.assert_allclose(state[:2], (0.9 * -1 + 0.1 * -11, 0.9 * 2 + 0.1 * 12), rtol=1e-6)
  lo, hi, _ = state
  # Frozen: quantizing new data with the stored range does not change the range.
  a = A.fake_quant(jnp.array([100.0]), num_bits=8, symmetric=False, x_min=lo, x_max=hi)
  np.testing.assert_allclose(a, [hi], rtol=1e-2)


def test_percentile_range_and_mse_weights():
  x = jnp.concatenate([jnp.linspace(-1, 1, 100_000), jnp.array([1000.0])])
  lo, hi = A.batch_range(x, percentile=99.9)
  assert hi < 2.0 and lo > -2.0
  w = jnp.asarray(np.random.default_rng(0).standard_t(3, size=4096), jnp.float32)
  err_mm = jnp.mean((A.quantize_weight(w, num_bits=4) - w) ** 2)
  err_mse = jnp.mean((A.quantize_weight(w, num_bits=4, method="mse") - w) ** 2)
  assert err_mse < err_mm


def test_bad_bits():
  with pytest.raises(ValueError, match="num_bits"):
    A.fake_quant(jnp.ones(2), num_bits=1, symmetric=True, x_min=-1, x_max=1)
