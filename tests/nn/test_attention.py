"""MultiHeadAttention: combinations, equivalences with ops, GQA, gate, capture, bad input."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from outeffhop_jax import nn as onn
from outeffhop_jax import ops

NORMALIZERS = ("softmax", "softmax1", "softmax_n:4", "clipped:-0.03:1.0", "clipped1:-0.03:1.0",
               "sparsemax", "entmax:1.5")
GATES = ("none", "linear", "mlp")
SINKS = ("none", "learned", 0.5)
COMBOS = [(n, g, s) for n, g, s in itertools.product(NORMALIZERS, GATES, SINKS)
          if s == "none" or ops.get_normalizer(n).kind == "sink"]


def _x(B=2, T=5, D=16, seed=0):
  return jax.random.normal(jax.random.key(seed), (B, T, D))


@pytest.mark.parametrize("normalizer,gate,sinks", COMBOS)
def test_every_combination_forward_backward_finite(normalizer, gate, sinks):
  mha = onn.MultiHeadAttention(16, 4, normalizer=normalizer, gate=gate, sinks=sinks,
                               rngs=nnx.Rngs(0))
  mask = jnp.array([[True] * 5, [True] * 3 + [False] * 2])[:, None, None, :]

  # Eager on purpose: op-by-op compiles are shared across the combinations (one jit each is slower).
  loss, (g_params, g_x) = nnx.value_and_grad(
      lambda m, x: jnp.sum(m(x, mask=mask, causal=True) ** 2), argnums=(0, 1))(mha, _x())
  assert np.isfinite(float(loss))
  assert all(np.all(np.isfinite(l)) for l in jax.tree.leaves(g_params))
  assert np.all(np.isfinite(g_x))
  if sinks == "learned":
    assert np.any(g_params["sinks"][...] != 0)  # the learned sink receives a gradient


def test_matches_ops_attention_with_projections():
  mha = onn.MultiHeadAttention(16, 4, normalizer="softmax1", rngs=nnx.Rngs(1))
  x = _x()
  q, k, v = mha.query(x), mha.key(x), mha.value(x)
  ctx = ops.dot_product_attention(q, k, v, normalizer="softmax1", is_causal=True)
  want = jnp.einsum("btnh,nhd->btd", ctx, mha.out.kernel[...]) + mha.out.bias[...]
  np.testing.assert_allclose(mha(x, causal=True), want, atol=1e-6)


def test_fixed_zero_sink_is_softmax1():
  x = _x()
  a = onn.MultiHeadAttention(16, 4, normalizer="softmax", sinks=0.0, rngs=nnx.Rngs(2))
  b = onn.MultiHeadAttention(16, 4, normalizer="softmax1", rngs=nnx.Rngs(2))
  np.testing.assert_allclose(a(x), b(x), atol=1e-6)


def test_gqa_equals_mha_with_repeated_kv_heads():
  gqa = onn.MultiHeadAttention(16, 4, num_kv_heads=2, rngs=nnx.Rngs(3))
  mha = onn.MultiHeadAttention(16, 4, rngs=nnx.Rngs(4))
  nnx.update(mha, {"query": nnx.state(gqa.query), "out": nnx.state(gqa.out)})
  for name in ("key", "value"):
    src, dst = getattr(gqa, name), getattr(mha, name)
    dst.kernel.set_value(jnp.repeat(src.kernel[...], 2, axis=1))
    dst.bias.set_value(jnp.repeat(src.bias[...], 2, axis=0))
  assert gqa.key.kernel.shape == (16, 2, 4)
  np.testing.assert_allclose(gqa(_x(), causal=True), mha(_x(), causal=True), atol=1e-5)


def test_gate_starts_at_pi_init_and_scales_context():
  mha = onn.MultiHeadAttention(16, 4, gate="linear", gate_init=0.25, rngs=nnx.Rngs(5))
  mha.gate.w.set_value(jnp.zeros_like(mha.gate.w[...]))
  ref = onn.MultiHeadAttention(16, 4, rngs=nnx.Rngs(5))
  nnx.update(ref, nnx.state(mha, nnx.Not(nnx.PathContains("gate"))))
  x = _x()
  _, got = onn.capture(mha, lambda m: m(x))
  _, want = onn.capture(ref, lambda m: m(x))
  np.testing.assert_allclose(got["context"], 0.25 * want["context"], atol=1e-6)


def test_gate_is_per_head_slice_of_input():
  gate = onn.AttentionGate(4, 4, kind="linear", pi_init=0.5, rngs=nnx.Rngs(0))
  x_BTNH = _x(D=16).reshape(2, 5, 4, 4)
  want = jax.nn.sigmoid(jnp.einsum("btnh,nh->btn", x_BTNH, gate.w[...]))
  np.testing.assert_allclose(gate(x_BTNH), want, atol=1e-6)


def test_capture_records_probs_only_when_asked():
  mha = onn.MultiHeadAttention(16, 4, rngs=nnx.Rngs(0))
  x = _x()
  y0 = mha(x)
  y1, acts = onn.capture(mha, lambda m: m(x), attention_probs=True)
  np.testing.assert_array_equal(y0, y1)
  assert acts["attn_probs"].shape == (2, 4, 5, 5) and acts["context"].shape == (2, 5, 4, 4)
  np.testing.assert_allclose(acts["attn_probs"], ops.attention_weights(
      mha.query(x), mha.key(x), normalizer="softmax1"), atol=1e-6)
  _, acts = onn.capture(mha, lambda m: m(x))
  assert set(acts) == {"context"}
  assert not mha.capture_intermediates  # switched back off


def test_attention_dropout_only_in_training():
  mha = onn.MultiHeadAttention(16, 4, dropout_rate=0.5, rngs=nnx.Rngs(0))
  x = _x()
  np.testing.assert_array_equal(mha(x), mha(x))
  assert not np.allclose(mha(x, deterministic=False), mha(x))


def test_cross_attention_and_blockwise_implementation():
  mha = onn.MultiHeadAttention(16, 4, d_context=8, implementation="blockwise", rngs=nnx.Rngs(0))
  ref = onn.MultiHeadAttention(16, 4, d_context=8, rngs=nnx.Rngs(0))
  c = jax.random.normal(jax.random.key(9), (2, 7, 8))
  np.testing.assert_allclose(mha(_x(), context_BSD=c), ref(_x(), context_BSD=c), atol=1e-5)


def test_partition_specs():
  mha = onn.MultiHeadAttention(16, 4, gate="mlp", sinks="learned", rngs=nnx.Rngs(0))
  specs = nnx.get_partition_spec(nnx.state(mha, nnx.Param))
  assert tuple(specs["query"]["kernel"].get_value()) == ("embed", "heads", "kv")
  assert tuple(specs["out"]["kernel"].get_value()) == ("heads", "kv", "embed")
  assert tuple(specs["sinks"].get_value()) == ("heads",)


@pytest.mark.parametrize("kwargs,match", [
    (dict(gate="sigmoid"), "gate"),
    (dict(normalizer="softmax2"), "normalizer spec"),
    (dict(sinks="big"), "sinks"),
    (dict(sinks="learned", normalizer="sparsemax"), "sinks"),
    (dict(num_kv_heads=3), "num_kv_heads"),
    (dict(implementation="magic"), "implementation"),
    (dict(gate="linear", head_dim=8), "d_model"),
])
def test_bad_construction_raises(kwargs, match):
  with pytest.raises(ValueError, match=match):
    onn.MultiHeadAttention(16, 4, rngs=nnx.Rngs(0), **kwargs)


@pytest.mark.parametrize("call,match", [
    (lambda m: m(jnp.ones((5, 16))), "x_BTD"),
    (lambda m: m(jnp.ones((2, 5, 12))), "x_BTD"),
    (lambda m: m(jnp.ones((2, 5, 16)), context_BSD=jnp.ones((2, 3, 8))), "context_BSD"),
    (lambda m: m(jnp.ones((2, 5, 16)), mask=jnp.ones((2, 1, 1, 4), bool)), "mask"),
    # A numeric mask follows the one mask rule (0/1 accepted); an additive 0 / -inf one is refused.
    (lambda m: m(jnp.ones((2, 5, 16)), mask=jnp.zeros((2, 1, 1, 5)).at[..., 0].set(-jnp.inf)),
     "mask looks like an additive mask"),
])
def test_bad_input_raises_naming_argument(call, match):
  mha = onn.MultiHeadAttention(16, 4, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match=match):
    call(mha)
