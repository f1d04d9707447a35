"""Hopfield layers: identity projections equal ops.hopfield_retrieve, pooling, OutEffHop, errors."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from outeffhop_jax import nn as onn
from outeffhop_jax import ops

STATIC = dict(state_static=True, stored_static=True, projection_static=True,
              normalize_state=False, normalize_stored=False, normalize_projection=False,
              disable_out_projection=True)


def _patterns(B=2, T=3, S=6, D=8, seed=0):
  k1, k2 = jax.random.split(jax.random.key(seed))
  return jax.random.normal(k1, (B, T, D)), jax.random.normal(k2, (B, S, D))


@pytest.mark.parametrize("normalizer", ["softmax", "softmax1", "sparsemax"])
@pytest.mark.parametrize("steps", [0, 2])
def test_identity_projections_equal_hopfield_retrieve(normalizer, steps):
  state, stored = _patterns()
  layer = onn.Hopfield(8, beta=0.7, update_steps_max=steps, update_steps_eps=0.0,
                       normalizer=normalizer, rngs=nnx.Rngs(0), **STATIC)
  got = layer(state=state, stored=stored)
  # update_steps_max refinement steps, then the final association: steps + 1 CCCP updates.
  want = jax.vmap(lambda q, m: ops.hopfield_retrieve(q, m, beta=0.7, normalizer=normalizer,
                                                     max_steps=steps + 1))(state, stored)
  np.testing.assert_allclose(got, want, atol=1e-5)


def test_softmax1_single_step_is_softmax1_attention():
  state, stored = _patterns()
  values = jax.random.normal(jax.random.key(3), (2, 6, 8))
  layer = onn.Hopfield(8, num_heads=2, update_steps_max=0, normalizer="softmax1", rngs=nnx.Rngs(1))
  got = layer(state=state, stored=stored, values=values)
  q = layer.state_proj(state)
  k = layer.stored_proj(stored)
  v = layer.values_proj(values)
  p = ops.softmax1(layer.beta * jnp.einsum("btnh,bsnh->bnts", q, k), axis=-1)
  want = layer.out(jnp.einsum("bnts,bsnh->btnh", p, v))
  np.testing.assert_allclose(got, want, atol=1e-5)
  assert layer.beta == pytest.approx(1 / np.sqrt(4))


def test_keyword_only_call():
  state, stored = _patterns()
  layer = onn.Hopfield(8, rngs=nnx.Rngs(0))
  with pytest.raises(TypeError):
    layer(stored, state)  # pylint: disable=too-many-function-args


def test_pooling_shape_mask_and_gradient():
  _, stored = _patterns(S=7, D=8)
  pool = onn.HopfieldPooling(8, quantity=3, num_heads=2, output_size=5, rngs=nnx.Rngs(0))
  mask = jnp.array([[True] * 7, [True] * 4 + [False] * 3])
  fwd = nnx.jit(lambda p, x: p(x, mask=mask))
  out = fwd(pool, stored)
  assert out.shape == (2, 3, 5)
  # Padding is invisible: changing padded patterns does not change the pooled output.
  noisy = stored.at[1, 4:].set(100.0)
  np.testing.assert_allclose(fwd(pool, noisy), out, atol=1e-5)
  grads = nnx.jit(nnx.grad(lambda p: jnp.sum(p(stored, mask=mask) ** 2)))(pool)
  assert np.any(grads["queries"][...] != 0)
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))


def test_hopfield_layer_learned_memory():
  state, _ = _patterns()
  layer = onn.HopfieldLayer(8, quantity=4, lookup_weights_as_separated=True,
                            lookup_targets_as_trainable=False, update_steps_max=1,
                            rngs=nnx.Rngs(0))
  grads = nnx.jit(nnx.grad(lambda l: jnp.sum(l(state) ** 2)))(layer)
  assert layer(state).shape == (2, 3, 8)
  assert "stored" in grads and "values" not in grads  # frozen targets are not parameters


def test_dropout_on_association():
  state, stored = _patterns()
  layer = onn.Hopfield(8, dropout_rate=0.5, rngs=nnx.Rngs(0))
  np.testing.assert_array_equal(layer(state=state, stored=stored), layer(state=state, stored=stored))
  assert not np.allclose(layer(state=state, stored=stored, deterministic=False),
                         layer(state=state, stored=stored))


@pytest.mark.parametrize("kwargs,match", [
    (dict(normalizer="nope"), "normalizer"),
    (dict(update_steps_max=-1), "update_steps_max"),
    (dict(beta=0.0), "beta"),
    (dict(state_static=True, hidden_size=3), "state"),
])
def test_bad_construction(kwargs, match):
  with pytest.raises(ValueError, match=match):
    onn.Hopfield(8, rngs=nnx.Rngs(0), **kwargs)


@pytest.mark.parametrize("call,match", [
    (lambda l, s, m: l(state=s[0], stored=m), "state"),
    (lambda l, s, m: l(state=s, stored=m[..., :4]), "stored"),
    (lambda l, s, m: l(state=s, stored=m, values=m[:, :2]), "values"),
    (lambda l, s, m: l(state=s, stored=m, mask=jnp.ones((2, 1, 3, 5), bool)), "mask"),
])
def test_bad_input(call, match):
  state, stored = _patterns()
  layer = onn.Hopfield(8, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match=match):
    call(layer, state, stored)


def test_mask_with_update_steps_equals_dropping_the_masked_patterns():
  """The memory mask reaches the retrieval steps too: masked stored patterns act as absent."""
  state, stored = _patterns()
  S = stored.shape[1]
  layer = onn.Hopfield(8, num_heads=2, update_steps_max=2, update_steps_eps=0.0, rngs=nnx.Rngs(0))
  keep = jnp.arange(S) < S - 2
  got = layer(state=state, stored=stored, mask=keep[None, None, None, :])
  want = layer(state=state, stored=stored[:, :S - 2])
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
