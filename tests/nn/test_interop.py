"""nn.attention_fn inside Flax's own attention modules, and nn.convert on a Flax-only model."""
from __future__ import annotations

import flax.linen as linen
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from outeffhop_jax import nn as onn

D, N = 16, 4


def _x(shape=(2, 5, D), seed=0):
  return jax.random.normal(jax.random.key(seed), shape, jnp.float32)


@pytest.mark.parametrize("rate,broadcast", [(0.0, True), (0.3, True), (0.3, False)])
def test_nnx_multihead_attention_softmax_equals_flax_default(rate, broadcast):
  """Same parameters and dropout rng: attention_fn("softmax") reproduces Flax's default, weights
  sown through module= included; "softmax1" moves the output."""
  x, mask = _x(), nnx.make_causal_mask(jnp.ones((2, 5)))  # float mask, as Flax makes it

  def mha(fn=None, kv_heads=None):
    kw = {} if fn is None else {"attention_fn": fn}
    return nnx.MultiHeadAttention(N, D, num_kv_heads=kv_heads, dropout_rate=rate,
                                  broadcast_dropout=broadcast, decode=False,
                                  rngs=nnx.Rngs(0, dropout=1), **kw)

  for kv_heads in (None, 2):
    run = lambda m: m(x, mask=mask, deterministic=False, sow_weights=True)
    flax_y, ours_y = run(mha(kv_heads=kv_heads)), run(ours := mha(onn.attention_fn("softmax"),
                                                                    kv_heads))
    np.testing.assert_allclose(ours_y, flax_y, rtol=1e-5, atol=1e-6)
    ref = mha(kv_heads=kv_heads)
    run(ref)
    np.testing.assert_allclose(nnx.state(ours, nnx.Intermediate)["attention_weights"][0],
                               nnx.state(ref, nnx.Intermediate)["attention_weights"][0], atol=1e-6)
  y1 = run(mha(onn.attention_fn("softmax1")))
  assert float(jnp.abs(y1 - flax_y).max()) > 1e-2


@pytest.mark.parametrize("rate", [0.0, 0.3])
def test_linen_multihead_attention_softmax_equals_flax_default(rate):
  x = _x()
  # key padding (a row with no visible key is the one documented difference: 0 here)
  mask = linen.make_attention_mask(jnp.ones((2, 5)), jnp.array([[1] * 5, [1] * 3 + [0] * 2]))
  flax_m = linen.MultiHeadDotProductAttention(N, dropout_rate=rate)
  ours_m = linen.MultiHeadDotProductAttention(N, dropout_rate=rate,
                                              attention_fn=onn.attention_fn("softmax"))
  params = flax_m.init(jax.random.key(0), x, deterministic=True)
  run = lambda m: m.apply(params, x, mask=mask, deterministic=False,
                          rngs={"dropout": jax.random.key(5)})
  np.testing.assert_allclose(run(ours_m), run(flax_m), rtol=1e-5, atol=1e-6)
  if rate == 0.0:  # module= sows the weights into linen's "intermediates", as Flax's own function
    sown = lambda m: m.apply(params, x, mask=mask, deterministic=True, sow_weights=True,
                             mutable=["intermediates"])[1]["intermediates"]
    np.testing.assert_allclose(sown(ours_m)["attention_weights"][0],
                               sown(flax_m)["attention_weights"][0], atol=1e-6)


class FlaxOnlyLM(nnx.Module):
  """A two-block causal transformer built only from Flax modules."""

  def __init__(self, vocab=13, d=D, *, rngs):
    self.embed = nnx.Embed(vocab, d, rngs=rngs)
    self.blocks = nnx.List([nnx.MultiHeadAttention(N, d, decode=False, rngs=rngs) for _ in range(2)])
    self.norms = nnx.List([nnx.LayerNorm(d, rngs=rngs) for _ in range(2)])
    self.head = nnx.Linear(d, vocab, rngs=rngs)

  def __call__(self, ids):
    h = self.embed(ids)
    for norm, attn in zip(self.norms, self.blocks):
      h = h + attn(norm(h), mask=nnx.make_causal_mask(ids))
    return self.head(h)


def _lm_loss(model, ids):
  return optax.softmax_cross_entropy_with_integer_labels(model(ids)[:, :-1], ids[:, 1:]).mean()


def test_convert_flax_model_changes_attention_counts_params_and_trains():
  ids = jax.random.randint(jax.random.key(1), (4, 8), 0, 13)
  model = FlaxOnlyLM(rngs=nnx.Rngs(0))
  before, y0 = onn.param_count(model), model(ids)
  report = onn.convert(model, "softmax1", gate="output_headwise", sinks="learned")
  assert [r.path for r in report] == ["blocks/0", "blocks/1"]
  # per module: N learned sinks + the headwise gate W_g [D, N] and bias [N]
  assert all(r.added_params == N + D * N + N for r in report)
  assert onn.param_count(model) - before == sum(r.added_params for r in report)
  assert isinstance(model.blocks[0], onn.ConvertedMultiHeadAttention)
  assert float(jnp.abs(model(ids) - y0).max()) > 1e-3  # softmax1 and the gate moved the output

  opt = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)

  @nnx.jit
  def step(model, opt):
    loss, grads = nnx.value_and_grad(_lm_loss)(model, ids)
    opt.update(model, grads)
    return loss

  sinks0 = np.asarray(model.blocks[0].sinks[...])
  losses = [float(step(model, opt)) for _ in range(6)]
  assert losses[-1] < losses[0] - 0.05, losses
  assert np.abs(np.asarray(model.blocks[0].sinks[...]) - sinks0).max() > 0  # sinks are trained


def test_convert_library_attention_equals_building_it_with_that_normalizer():
  x = _x()
  mha = onn.MultiHeadAttention(D, N, normalizer="softmax", rngs=nnx.Rngs(3))
  report = onn.convert(mha, "softmax1", sinks="learned")
  assert report[0].path == "" and report[0].added_params == N
  built = onn.MultiHeadAttention(D, N, normalizer="softmax1", sinks="learned", rngs=nnx.Rngs(3))
  np.testing.assert_allclose(mha(x, causal=True), built(x, causal=True), atol=1e-6)
  with pytest.raises(ValueError, match="no attention module"):
    onn.convert(nnx.Linear(2, 2, rngs=nnx.Rngs(0)))
  with pytest.raises(ValueError, match="sinks"):
    onn.convert(mha, "sigmoid", sinks="learned")
