"""The normalizer registry: every spec parses, behaves as its function, and bad specs are named."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import outeffhop_jax as oe

SPECS = ["softmax", "softmax1", "softmax_n:4", "clipped:-0.025:1.0", "clipped1:-0.05:1.02",
         "sparsemax", "entmax:1.5"]


def test_specs_map_to_their_functions():
  x = jnp.asarray(np.random.default_rng(0).normal(size=(3, 7)) * 2, jnp.float32)
  np.testing.assert_allclose(oe.get_normalizer("softmax")(x), jax.nn.softmax(x), rtol=1e-6)
  np.testing.assert_allclose(oe.get_normalizer("softmax1")(x), oe.softmax1(x), rtol=1e-6)
  np.testing.assert_allclose(oe.get_normalizer("softmax_n:4")(x), oe.softmax_with_sink(x, math.log(4)),
                             rtol=1e-6)
  np.testing.assert_allclose(oe.get_normalizer("clipped:-0.025:1.0")(x),
                             oe.clipped_softmax(x, -0.025, 1.0), rtol=1e-6)
  np.testing.assert_allclose(oe.get_normalizer("clipped1:-0.05:1.02")(x),
                             oe.clipped_softmax1(x, -0.05, 1.02), rtol=1e-6)
  np.testing.assert_allclose(oe.get_normalizer("sparsemax")(x), oe.sparsemax(x), rtol=1e-6)
  np.testing.assert_allclose(oe.get_normalizer("entmax:1.5")(x), oe.entmax(x, 1.5), rtol=1e-6)


def test_sink_fields():
  assert oe.get_normalizer("softmax").sink == -math.inf
  assert oe.get_normalizer("softmax1").sink == 0.0
  assert oe.get_normalizer("softmax_n:4").sink == pytest.approx(math.log(4))
  assert oe.get_normalizer("sparsemax").sink is None
  norm = oe.get_normalizer("softmax1")
  assert oe.get_normalizer(norm) is norm


@pytest.mark.parametrize("spec", SPECS)
def test_every_spec_masks_finite_and_differentiable(spec):
  norm = oe.get_normalizer(spec)
  x = jnp.asarray(np.random.default_rng(1).normal(size=(3, 6)), jnp.float32)
  where = jnp.array([[True] * 6, [True, True, False, True, False, False], [False] * 6])
  p = norm(x, where=where)
  assert np.isfinite(p).all()
  np.testing.assert_array_equal(np.asarray(p)[~np.asarray(where)], 0.0)
  g = jax.grad(lambda x: jnp.sum(norm(x, where=where) * jnp.arange(6.0)))(x)
  assert np.isfinite(g).all()
  for dtype in (jnp.bfloat16, jnp.float16):
    pd = norm(x.astype(dtype) * 1e3, where=where)
    assert pd.dtype == dtype and np.isfinite(np.asarray(pd, np.float32)).all()


@pytest.mark.parametrize("spec", ["softmax", "softmax1", "softmax_n:4", "clipped:-0.05:1.05",
                                  "clipped1:-0.05:1.05", "sparsemax"])
def test_check_grads_every_normalizer_order_2(spec):
  norm = oe.get_normalizer(spec)
  x = jnp.asarray(np.random.default_rng(2).normal(size=(2, 5)), jnp.float32) * 0.5
  check_grads(lambda x: norm(x), (x,), order=2, modes=("fwd", "rev"), atol=1e-2, rtol=1e-2)


def test_check_grads_entmax_reverse():
  norm = oe.get_normalizer("entmax:1.5")
  x = jnp.asarray(np.random.default_rng(3).normal(size=(2, 5)), jnp.float32)
  # The custom_vjp defines reverse mode only; second order by finite differences of the VJP.
  check_grads(lambda x: norm(x), (x,), order=1, modes=("rev",), atol=1e-2, rtol=1e-2)


@pytest.mark.parametrize("spec", ["softmax2", "softmax_n", "softmax_n:0", "softmax_n:abc",
                                  "clipped:0.1:1", "clipped:-0.1", "entmax:3", "entmax", "", "relu"])
def test_unknown_or_malformed_spec_lists_valid_forms(spec):
  with pytest.raises(ValueError) as err:
    oe.get_normalizer(spec)
  assert spec in str(err.value) or "softmax1" in str(err.value)


def test_unknown_spec_message_lists_forms():
  with pytest.raises(ValueError, match=r"valid forms:.*softmax1.*entmax:ALPHA"):
    oe.get_normalizer("softmax2")
  with pytest.raises(TypeError, match="normalizer"):
    oe.get_normalizer(3)
