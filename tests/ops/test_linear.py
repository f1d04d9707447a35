"""ops.linear.dense_dot_general: lax.dot_general's values and derivatives, a faster CPU backward."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.sharding import Mesh, PartitionSpec as P

from outeffhop_jax.ops import linear

DN = (((2,), (0,)), ((), ()))


def _xw(d_in=6, d_out=10):
  r = np.random.RandomState(0)
  return jnp.asarray(r.randn(3, 5, d_in), jnp.float32), jnp.asarray(r.randn(d_in, d_out), jnp.float32)


def _loss(dot):
  return lambda x, w: jnp.sum(jnp.sin(dot(x, w, DN)) ** 2)


@pytest.mark.parametrize("d_in,d_out", [(6, 10), (10, 6)])  # the custom path (D <= F) and the plain one
def test_value_and_derivatives_equal_lax(d_in, d_out):
  x, w = _xw(d_in, d_out)
  ref, new = _loss(lax.dot_general), _loss(linear.dense_dot_general)
  np.testing.assert_allclose(linear.dense_dot_general(x, w, DN), lax.dot_general(x, w, DN), rtol=1e-6)
  for a, b in zip(jax.grad(new, (0, 1))(x, w), jax.grad(ref, (0, 1))(x, w)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
  tangents = (jnp.cos(x), jnp.sin(w))
  np.testing.assert_allclose(jax.jvp(new, (x, w), tangents)[1], jax.jvp(ref, (x, w), tangents)[1],
                             rtol=1e-5)
  np.testing.assert_allclose(jax.hessian(new, 1)(x, w), jax.hessian(ref, 1)(x, w), rtol=1e-4,
                             atol=1e-4)
  per_row = jax.vmap(jax.grad(new, 1), (0, None))(x[:, None], w)
  np.testing.assert_allclose(per_row, jax.vmap(jax.grad(ref, 1), (0, None))(x[:, None], w),
                             rtol=1e-5, atol=1e-5)


def test_weight_gradient_is_the_barriered_plain_matmul():
  """The reverse-mode program holds an optimization_barrier (the materialised x^T) only on the
  custom path; other dimension numbers go to lax.dot_general unchanged."""
  x, w = _xw()
  jaxpr = str(jax.make_jaxpr(jax.grad(_loss(linear.dense_dot_general), 1))(x, w))
  assert "optimization_barrier" in jaxpr
  other = (((2,), (1,)), ((), ()))  # contracts the kernel's last axis: not the dense form
  np.testing.assert_allclose(linear.dense_dot_general(x, w.T, other), lax.dot_general(x, w.T, other),
                             rtol=1e-6)
  assert "optimization_barrier" not in str(jax.make_jaxpr(
      jax.grad(lambda w: jnp.sum(linear.dense_dot_general(x, w, other)), 0))(w.T))


def test_shard_map_grad():
  """Under shard_map (rows split over 2 devices) the gradient equals lax.dot_general's there."""
  mesh = Mesh(np.array(jax.devices()[:2]), ("d",))
  x, w = _xw()
  x = jnp.concatenate([x, x[:1]])  # 4 rows: 2 per device

  def grad_w(dot):
    return jax.shard_map(lambda x, w: jax.grad(_loss(dot), 1)(x, w), mesh=mesh,
                         in_specs=(P("d"), P()), out_specs=P())(x, w)

  np.testing.assert_allclose(grad_w(linear.dense_dot_general), grad_w(lax.dot_general), rtol=1e-5,
                             atol=1e-5)


def test_a_patched_dot_general_is_called_as_itself(monkeypatch):
  """qwix quantizes by patching lax.dot_general; the dense dot must then call it directly (not
  inside a custom_jvp, where qwix cannot update its statistics)."""
  x, w = _xw()
  calls, original = [], lax.dot_general

  def spy(*args, **kwargs):
    calls.append(1)
    return original(*args, **kwargs)

  assert "custom_jvp" in str(jax.make_jaxpr(lambda x, w: linear.dense_dot_general(x, w, DN))(x, w))
  monkeypatch.setattr(lax, "dot_general", spy)
  jaxpr = str(jax.make_jaxpr(lambda x, w: linear.dense_dot_general(x, w, DN))(x, w))
  assert calls and "custom_jvp" not in jaxpr


def test_other_backends_get_lax_dot_general(monkeypatch):
  """The barriered x^T is an XLA:CPU layout fix: traced for another default backend (GPU, TPU),
  the dense dot is lax.dot_general itself, with no custom rule or barrier in its gradient."""
  x, w = _xw()
  monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
  jaxpr = str(jax.make_jaxpr(jax.grad(_loss(linear.dense_dot_general), 1))(x, w))
  assert "custom_jvp" not in jaxpr and "optimization_barrier" not in jaxpr
