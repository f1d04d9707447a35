"""Bad inputs get a clear error naming the argument, or a correct (empty) result; never a silent
wrong number or an error from inside JAX. One test per class of mistake; the reference values are
naive formulas written here."""
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import outeffhop_jax as oe
from outeffhop_jax import models, nn, ops


@pytest.fixture(scope="module")
def opt():
  cfg = models.OPTConfig.from_preset("tiny", vocab_size=32, max_len=16, d_model=16, num_heads=2,
                                     d_ff=32, num_layers=1)
  return models.OPT(cfg, rngs=nnx.Rngs(0))


@pytest.fixture(scope="module")
def bert():
  cfg = models.BERTConfig.from_preset("tiny", vocab_size=32, max_len=16, d_model=16, num_heads=2,
                                      d_ff=32, num_layers=1)
  return models.BERT(cfg, rngs=nnx.Rngs(0))


def naive_softmax1(x, valid):
  e = np.where(valid, np.exp(np.asarray(x, np.float64)), 0.0)
  return e / (1.0 + e.sum(-1, keepdims=True))


def test_mask_rule_where_and_layer_masks():
  """One mask rule: bool, or numeric non-zero = valid; an additive 0 / -inf mask is refused."""
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 5)), jnp.float32)
  valid = np.array([[1, 1, 0, 1, 0], [0, 1, 1, 1, 1]], bool)
  ref = naive_softmax1(x, valid)
  for where in (valid, valid.astype(np.float32), valid.astype(np.int32)):
    np.testing.assert_allclose(oe.softmax1(x, where=where), ref, atol=1e-6)
  additive = np.where(valid, 0.0, -np.inf).astype(np.float32)
  for spec in ("softmax1", "softmax", "sparsemax", "softpick", "clipped:-0.1:1"):
    with pytest.raises(ValueError, match=r"where looks like an additive mask.*== 0"):
      ops.get_normalizer(spec)(x, where=additive)
  with pytest.raises(ValueError, match="where looks like an additive mask"):
    ops.softmax1(x, where=np.where(valid, 0.0, -1e9))
  # Layers: a float 0/1 mask equals the boolean one; an additive one is refused naming `mask`.
  attn = nn.MultiHeadAttention(8, 2, rngs=nnx.Rngs(0))
  h = jnp.ones((2, 5, 8)) * jnp.arange(5.0)[:, None]
  key_mask = jnp.asarray(valid)[:, None, None, :]
  np.testing.assert_allclose(attn(h, mask=key_mask.astype(jnp.float32)), attn(h, mask=key_mask),
                             atol=1e-6)
  with pytest.raises(ValueError, match="mask looks like an additive mask"):
    attn(h, mask=jnp.where(key_mask, 0.0, -jnp.inf))
  pool = nn.HopfieldPooling(8, rngs=nnx.Rngs(0))
  np.testing.assert_allclose(pool(h, mask=valid.astype(np.float32)), pool(h, mask=valid), atol=1e-6)
  with pytest.raises(ValueError, match="mask looks like an additive mask"):
    pool(h, mask=np.where(valid, 0.0, -np.inf))


def test_model_attention_mask_is_bool_or_0_1(opt, bert):
  ids = jnp.array([[5, 6, 7, 8]])
  ones = jnp.ones((1, 4), jnp.int32)
  for mask, what in (([[1, 1, 2, 1]], "value 2"), ([[0, 0, -1, 0]], "additive"),
                     ([[0.0, 0.0, -np.inf, 0.0]], "additive")):
    for model in (opt, bert):
      with pytest.raises(ValueError, match=f"attention_mask must be boolean or hold only 0 and 1.*{what}"):
        model(ids, attention_mask=jnp.asarray(mask))
  # 0/1 in any dtype is the boolean mask; all ones equals no mask (OPT positions 0..T-1).
  pad = jnp.array([[0, 1, 1, 1]])
  for model in (opt, bert):
    ref = model(ids, attention_mask=pad.astype(bool))
    np.testing.assert_allclose(model(ids, attention_mask=pad.astype(jnp.float32)), ref, atol=1e-6)
    np.testing.assert_allclose(model(ids, attention_mask=ones), model(ids), atol=1e-6)
  # Under jit the values are unknown: the documented non-zero rule, so a 2 counts as a 1.
  jitted = nnx.jit(lambda m, i, k: m(i, attention_mask=k))
  np.testing.assert_allclose(jitted(opt, ids, jnp.array([[1, 1, 2, 1]])), opt(ids), atol=1e-5)


def test_token_ids_outside_vocab(opt, bert):
  for model in (opt, bert):
    for bad in (32, -1):
      with pytest.raises(ValueError, match=rf"input_ids must hold ids in \[0, vocab_size=32\), got {bad}"):
        model(jnp.array([[1, 2, bad]]))
  with pytest.raises(ValueError, match=r"token_type_ids must hold ids in \[0, type_vocab_size=2\)"):
    bert(jnp.array([[1, 2, 3]]), token_type_ids=jnp.array([[0, 2, 0]]))
  # The documented jit behaviour (values unknown there): id >= vocab gives NaN logits, -1 wraps
  # to the last id.
  jitted = nnx.jit(lambda m, i: m(i))
  assert np.isnan(np.asarray(jitted(opt, jnp.array([[1, 2, 32]]))[0, 2])).all()
  np.testing.assert_allclose(jitted(opt, jnp.array([[1, 2, -1]])), opt(jnp.array([[1, 2, 31]])),
                             atol=1e-5)


def test_normalizer_parameters_non_finite_or_out_of_range():
  bad_specs = {"clipped:nan:1": "GAMMA", "clipped:-inf:1": "GAMMA", "clipped1:-0.1:nan": "ZETA",
               "clipped:-0.1:inf": "ZETA", "clipped:0.1:1": "GAMMA", "clipped:-0.1:0.5": "ZETA",
               "softmax_n:inf": "N", "softmax_n:nan": "N", "softmax_n:0": "N",
               "entmax:nan": "ALPHA", "entmax:1": "ALPHA", "sigmoid:nan": "B", "sigmoid:inf": "B",
               "softpick:-1": "EPS", "softpick:nan": "EPS"}
  for spec, field in bad_specs.items():
    with pytest.raises(ValueError, match=rf"{field}=.* in '{re.escape(spec)}'"):
      ops.get_normalizer(spec)
  x = jnp.ones((2, 3))
  direct = [
      (lambda: ops.clipped_softmax(x, math.nan), "gamma"),
      (lambda: ops.clipped_softmax1(x, -0.1, math.inf), "zeta"),
      (lambda: ops.clipped_softmax(x, jnp.array(0.5)), "gamma"),
      (lambda: ops.softmax_with_sink(x, math.nan), "sink"),
      (lambda: ops.softmax_with_sink(x, jnp.array([0.0, math.inf])), "sink"),
      (lambda: ops.sigmoid_attention(x, math.nan), "bias"),
      (lambda: ops.softpick(x, -1.0), "eps"),
      (lambda: ops.softpick(x, math.nan), "eps"),
      (lambda: ops.entmax(x, jnp.array(3.0)), "alpha"),
      (lambda: ops.hopfield_energy(x, x, beta=math.inf), "beta"),
      (lambda: ops.hopfield_update(x, x, beta=jnp.array(-1.0)), "beta"),
      (lambda: nn.MultiHeadAttention(8, 2, sinks=math.nan, rngs=nnx.Rngs(0)), "sinks"),
      (lambda: nn.Hopfield(8, beta=math.inf, rngs=nnx.Rngs(0)), "beta"),
      (lambda: models.STanHopConfig(memory_beta=math.nan), "memory_beta"),
      (lambda: models.OPTConfig(gate="linear", gate_init=math.nan), r"gate_init \(pi_init\)"),
  ]
  for fn, name in direct:
    with pytest.raises(ValueError, match=rf"^{name} must|\.{name} must"):
      fn()
  # -inf stays "no sink": plain softmax.
  np.testing.assert_allclose(ops.softmax_with_sink(x, -math.inf), jax.nn.softmax(x), atol=1e-6)


def test_non_positive_sizes():
  cases = [
      (lambda: models.OPTConfig.from_preset("tiny", num_layers=-1), "OPTConfig.num_layers"),
      (lambda: models.OPTConfig.from_preset("tiny", num_heads=0), "OPTConfig.num_heads"),
      (lambda: models.OPTConfig(d_ff=0), "OPTConfig.d_ff"),
      (lambda: models.OPTConfig(vocab_size=0), "OPTConfig.vocab_size"),
      (lambda: models.BERTConfig(max_len=0), "BERTConfig.max_len"),
      (lambda: models.BERTConfig(type_vocab_size=0), "BERTConfig.type_vocab_size"),
      (lambda: models.ViTConfig(patch_size=0), "ViTConfig.patch_size"),
      (lambda: models.STanHopConfig(num_heads=0), "STanHopConfig.num_heads"),
      (lambda: models.STanHopConfig(tune_memories=-1), "STanHopConfig.tune_memories"),
      (lambda: nn.MultiHeadAttention(16, 0, rngs=nnx.Rngs(0)), "num_heads"),
      (lambda: nn.MultiHeadAttention(16, 2, num_kv_heads=0, rngs=nnx.Rngs(0)), "num_kv_heads"),
      (lambda: nn.MultiHeadAttention(16, 2, head_dim=-1, rngs=nnx.Rngs(0)), "head_dim"),
      (lambda: nn.Hopfield(16, stored_size=0, rngs=nnx.Rngs(0)), "stored_size"),
      (lambda: nn.Hopfield(16, output_size=-1, rngs=nnx.Rngs(0)), "output_size"),
      (lambda: nn.HopfieldLayer(16, quantity=0, rngs=nnx.Rngs(0)), "quantity"),
      (lambda: nn.GSHPooling(16, quantity=-2, rngs=nnx.Rngs(0)), "quantity"),
      (lambda: nn.gates.AttentionGate(0, 4, rngs=nnx.Rngs(0)), "num_heads"),
      (lambda: nn.gates.OutputGate(0, 2, 4, rngs=nnx.Rngs(0)), "d_model"),
  ]
  for fn, name in cases:
    with pytest.raises(ValueError, match=rf"^{re.escape(name)} must be an int >=? ?0?"):
      fn()


def test_empty_inputs(opt):
  # A row over 0 entries is an empty row; an empty batch an empty batch (every normalizer).
  specs = ("softmax", "softmax1", "softmax_n:2", "clipped:-0.1:1", "sparsemax", "entmax:1.5",
           "sigmoid", "softplus", "stablemax", "softpick")
  for spec in specs:
    norm = ops.get_normalizer(spec)
    assert norm(jnp.zeros((0, 3))).shape == (0, 3)
    assert norm(jnp.zeros((2, 0))).shape == (2, 0)
    assert norm(jnp.zeros((2, 0)), where=jnp.zeros((2, 0), bool)).shape == (2, 0)
  # log(1 + sum over nothing) = 0; with sink s: log(exp(s)) = s.
  np.testing.assert_array_equal(ops.logsumexp1(jnp.zeros((3, 0))), np.zeros(3))
  np.testing.assert_allclose(ops.logsumexp_with_sink(jnp.zeros((2, 0)), 1.5), [1.5, 1.5])
  # Hopfield with zero memories: update 0; energy 1/2 |x|^2 - sink / beta.
  q = jnp.asarray(np.random.default_rng(1).normal(size=(3, 4)), jnp.float32)
  empty = jnp.zeros((0, 4))
  half_sq = 0.5 * np.sum(np.asarray(q, np.float64) ** 2, -1)
  np.testing.assert_allclose(ops.hopfield_energy(q, empty, beta=2.0, normalizer="softmax1"),
                             half_sq, rtol=1e-6)
  np.testing.assert_allclose(ops.hopfield_energy(q, empty, beta=2.0, normalizer="softmax_n:3"),
                             half_sq - math.log(3) / 2.0, rtol=1e-6)
  for spec in ("softmax", "sparsemax"):
    assert np.isposinf(ops.hopfield_energy(q, empty, beta=2.0, normalizer=spec)).all()
  for spec in ("softmax", "softmax1", "entmax:1.5", "sigmoid"):
    np.testing.assert_array_equal(ops.hopfield_update(q, empty, beta=2.0, normalizer=spec), 0.0)
  np.testing.assert_array_equal(ops.hopfield_retrieve(q, empty, beta=2.0, max_steps=2), 0.0)
  # Layers: empty batch / sequence -> empty output; no keys -> context 0 (output = the bias).
  attn = nn.MultiHeadAttention(8, 2, gate="linear", rngs=nnx.Rngs(0))
  assert attn(jnp.ones((0, 3, 8))).shape == (0, 3, 8)
  assert attn(jnp.ones((2, 0, 8))).shape == (2, 0, 8)
  out = attn(jnp.ones((2, 3, 8)), context_BSD=jnp.ones((2, 0, 8)))
  np.testing.assert_allclose(out, np.broadcast_to(attn.out.bias[...], (2, 3, 8)), atol=0)
  hop = nn.Hopfield(8, num_heads=2, update_steps_max=2, rngs=nnx.Rngs(0))
  assert hop(state=jnp.ones((0, 3, 8)), stored=jnp.ones((0, 4, 8))).shape == (0, 3, 8)
  np.testing.assert_array_equal(hop(state=jnp.ones((2, 3, 8)), stored=jnp.ones((2, 0, 8))), 0.0)
  # Models: empty batch / sequence -> empty logits; an empty Plug-and-Play bank is refused.
  assert opt(jnp.zeros((0, 4), jnp.int32)).shape == (0, 4, 32)
  assert opt(jnp.zeros((2, 0), jnp.int32), attention_mask=jnp.zeros((2, 0))).shape == (2, 0, 32)
  with pytest.raises(ValueError, match=r"memory_KLC must have shape \[K, 12, 2\] with K >= 1"):
    models.stanhop.plug_and_play(jnp.zeros((1, 12, 2)), jnp.zeros((0, 12, 2)), beta=1.0)
