"""Qiu et al.'s output gates: shapes, value at init, the formula, capture, GSH and W8A8."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from outeffhop_jax import models
from outeffhop_jax import nn as onn
from outeffhop_jax.analysis.quant import w8a8


def _x(B=2, T=5, D=16, seed=0):
  return jax.random.normal(jax.random.key(seed), (B, T, D))


@pytest.mark.parametrize("kind,shape", [("output_headwise", (2, 5, 4)),
                                        ("output_elementwise", (2, 5, 4, 6))])
def test_shapes_dtype_and_value_at_init(kind, shape):
  gate = onn.OutputGate(16, 4, 6, kind=kind, pi_init=0.25, rngs=nnx.Rngs(0))
  w_shape = (16, 4) if kind == "output_headwise" else (16, 4, 6)
  assert gate.w.shape == w_shape and gate.b.shape == w_shape[1:]
  assert gate.w.dtype == gate.b.dtype == jnp.float32
  g = gate(_x().astype(jnp.bfloat16))
  assert g.shape == shape and g.dtype == jnp.float32
  # Documented init: bias logit(pi_init), weights N(0, 1/D): exactly pi_init at x = 0 ...
  np.testing.assert_allclose(gate(jnp.zeros((2, 5, 16))), 0.25, rtol=1e-6)
  np.testing.assert_allclose(gate.b[...], np.log(0.25 / 0.75), rtol=1e-6)
  assert abs(float(jnp.std(gate.w[...])) - 16 ** -0.5) < 0.1
  # ... and the formula sigmoid(x W + b) elsewhere.
  x = _x()
  want = jax.nn.sigmoid(np.einsum("btd,d...->bt...", np.asarray(x), np.asarray(gate.w[...]))
                        + np.asarray(gate.b[...]))
  np.testing.assert_allclose(gate(x), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["output_headwise", "output_elementwise"])
def test_attention_applies_the_gate_to_the_context(kind):
  # d_model 16 with 2 heads of 4: the output gates do not need d_model == N * H.
  mha = onn.MultiHeadAttention(16, 2, head_dim=4, gate=kind, gate_init=0.5, rngs=nnx.Rngs(1))
  ref = onn.MultiHeadAttention(16, 2, head_dim=4, rngs=nnx.Rngs(1))
  nnx.update(ref, nnx.state(mha, nnx.Not(nnx.PathContains("gate"))))
  x = _x()
  _, got = onn.capture(mha, lambda m: m(x, causal=True))
  _, plain = onn.capture(ref, lambda m: m(x, causal=True))
  g = mha.gate(x)
  g_BTNH = g[..., None] if kind == "output_headwise" else g
  np.testing.assert_allclose(got["context"], plain["context"] * g_BTNH, rtol=1e-5, atol=1e-6)
  y = mha(x, causal=True)
  want = jnp.einsum("btnh,nhd->btd", got["context"], mha.out.kernel[...]) + mha.out.bias[...]
  np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-6)
  grads = nnx.grad(lambda m: jnp.sum(m(x, causal=True) ** 2))(mha)
  assert np.abs(grads["gate"]["w"][...]).max() > 0 and np.abs(grads["gate"]["b"][...]).max() > 0


def test_gate_options_are_validated():
  with pytest.raises(ValueError, match="gate must be one of"):
    onn.MultiHeadAttention(16, 4, gate="output", rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="d_model"):  # the head gates still need D == N * H
    onn.MultiHeadAttention(16, 2, head_dim=4, gate="linear", rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="gate must be one of"):
    models.OPTConfig.from_preset("tiny", gate="output_rowwise")
  with pytest.raises(ValueError, match="AttentionGate needs"):
    onn.AttentionGate(4, 4, kind="output_headwise", rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="OutputGate needs"):
    onn.OutputGate(16, 4, 4, kind="linear", rngs=nnx.Rngs(0))
  assert models.OPTConfig.from_preset("tiny", gate="output_headwise").gate == "output_headwise"


def test_params_stay_float32_under_bf16_params():
  mha = onn.MultiHeadAttention(16, 4, gate="output_elementwise", param_dtype=jnp.bfloat16,
                               dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
  assert mha.query.kernel.dtype == jnp.bfloat16 and mha.gate.w.dtype == jnp.float32
  assert mha(_x().astype(jnp.bfloat16)).dtype == jnp.bfloat16


@pytest.mark.parametrize("kind", ["output_headwise", "output_elementwise"])
def test_gsh_output_gate_reads_the_state_patterns(kind):
  gsh = onn.GSH(16, num_heads=2, hidden_size=4, pattern_size=3, normalizer="softmax1", gate=kind,
                rngs=nnx.Rngs(0))
  assert gsh.gate.w.shape[0] == 2 * 4
  q = jax.random.normal(jax.random.key(1), (2, 5, 2, 4))
  k = jax.random.normal(jax.random.key(2), (2, 6, 2, 4))
  v = jax.random.normal(jax.random.key(3), (2, 6, 2, 3))
  z = gsh.associate(q, k, v, mask=None, deterministic=True)
  plain = onn.Hopfield.associate(gsh, q, k, v, mask=None, deterministic=True)
  g = gsh.gate(q.reshape(2, 5, 8))
  np.testing.assert_allclose(z, plain * (g[..., None] if g.ndim == 3 else g), rtol=1e-5,
                             atol=1e-6)


def test_w8a8_keeps_output_gates_float_and_off_is_identical():
  cfg = models.OPTConfig.from_preset("tiny", vocab_size=64, max_len=16, d_model=32, num_layers=1,
                                     num_heads=4, d_ff=64, gate="output_elementwise",
                                     gate_init=0.5)
  m = models.OPT(cfg, rngs=nnx.Rngs(0))
  ids = jax.random.randint(jax.random.key(1), (2, 16), 0, 64)
  ref = np.asarray(m(ids))
  off = w8a8.quantize_model(m, "opt", w8a8.QuantConfig(weight_bits=None, act_bits=None))
  np.testing.assert_array_equal(np.asarray(off(ids)), ref)
  q = w8a8.calibrate(w8a8.quantize_model(m, "opt", w8a8.QuantConfig(8, 8)), [ids])
  assert np.isfinite(np.asarray(q(ids))).all()
  gates_q = [g for _, g in nnx.iter_modules(q) if isinstance(g, onn.OutputGate)]
  gates_m = [g for _, g in nnx.iter_modules(m) if isinstance(g, onn.OutputGate)]
  assert len(gates_q) == len(gates_m) == 1
  np.testing.assert_array_equal(gates_q[0].w[...], gates_m[0].w[...])
  _, acts = onn.capture(q, lambda mm: mm(ids), attention_probs=True)
  assert acts["layers.0.self_attn.context"].shape == (2, 16, 4, 8)
  assert acts["layers.0.self_attn.attn_probs"].shape == (2, 4, 16, 16)
