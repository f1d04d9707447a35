"""W8A8 module surgery: identity with quantizers off, ~float at 16 bits, frozen ranges, float head."""
import contextlib
import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from outeffhop_jax import models
from outeffhop_jax.analysis.quant import w8a8
from outeffhop_jax.nn import AttentionGate, capture

KW = dict(d_model=32, num_layers=2, num_heads=4, d_ff=64)


def _model(family, **attn):
  if family == "opt":
    m = models.OPT(models.OPTConfig.from_preset("tiny", vocab_size=64, max_len=16, **KW, **attn),
                   rngs=nnx.Rngs(0))
    return m, jax.random.randint(jax.random.key(1), (4, 16), 0, 64)
  if family == "bert":
    m = models.BERT(models.BERTConfig.from_preset("tiny", vocab_size=64, max_len=16, **KW, **attn),
                    rngs=nnx.Rngs(0))
    return m, jax.random.randint(jax.random.key(1), (4, 16), 0, 64)
  m = models.ViT(models.ViTConfig.from_preset("tiny", image_size=8, patch_size=4, num_channels=1,
                                              **KW, **attn), rngs=nnx.Rngs(0))
  return m, jax.random.normal(jax.random.key(1), (4, 8, 8, 1))


CASES = [("opt", {}), ("opt", dict(gate="linear", normalizer="clipped1:-0.05:1.0")),
         ("opt", dict(sinks="learned", normalizer="softmax")), ("bert", dict(gate="mlp")),
         ("vit", dict(normalizer="softmax1"))]


@pytest.mark.parametrize("family,attn", CASES)
def test_quantizers_off_is_identical_and_16_bit_is_float(family, attn):
  m, x = _model(family, **attn)
  ref = np.asarray(m(x))
  off = w8a8.quantize_model(m, family, w8a8.QuantConfig(weight_bits=None, act_bits=None))
  np.testing.assert_array_equal(np.asarray(off(x)), ref)
  q16 = w8a8.calibrate(w8a8.quantize_model(m, family, w8a8.QuantConfig(16, 16)), [x])
  # 16-bit steps are ~1.5e-5 of a range; through two blocks with LayerNorms the output moves by
  # about 2e-3 of its largest entry (seen: 2.05e-3 for the ViT), while 8 bits move it 20x more.
  np.testing.assert_allclose(np.asarray(q16(x)), ref, atol=5e-3 * np.abs(ref).max())
  q8 = w8a8.calibrate(w8a8.quantize_model(m, family, w8a8.QuantConfig(8, 8)), [x])
  err8 = np.abs(np.asarray(q8(x)) - ref).max()
  err16 = np.abs(np.asarray(q16(x)) - ref).max()
  assert err16 < err8 / 20  # the quantizers are really on at 8 bits
  np.testing.assert_array_equal(np.asarray(m(x)), ref)  # the original model is untouched


@contextlib.contextmanager
def _compiled_programs():
  """Names of the programs XLA compiles inside the block (from JAX's compile log)."""
  names = []

  class Handler(logging.Handler):
    def emit(self, record):
      msg = record.getMessage()
      if msg.startswith("Finished XLA compilation of "):
        names.append(msg.split()[4])

  logger, handler = logging.getLogger("jax._src.dispatch"), Handler()
  logger.addHandler(handler)
  try:
    with jax.log_compiles():
      yield names
  finally:
    logger.removeHandler(handler)


def test_calibrating_a_restored_run_runs_one_program(vanilla_workdir):
  """A restored run's weights sit on a mesh; the calibration pass hands back only the ranges, so
  after a first calibration (compiling the pass, or reusing it after other tests) two more batches
  of that shape compile nothing that runs the model. (An nnx.jit of the whole model handed the
  weights back with another placement and compiled the model again for the second batch.)"""
  from outeffhop_jax.analysis.experiments.study import runs

  run = runs.load_run(vanilla_workdir)
  # Batches of 3 rows: a shape no other test calibrates, so no earlier test compiled its programs.
  cal = [c[:3] for c in runs.calibration_inputs(run, 0, 2)]
  w8a8.calibrate(w8a8.quantize_model(run.model, "opt", w8a8.SETTINGS["W8A8"]), cal[:1])
  q = w8a8.quantize_model(run.model, "opt", w8a8.SETTINGS["W8A8"])
  with _compiled_programs() as names:
    w8a8.calibrate(q, cal)
  assert not [n for n in names if "pass" in n or "forward" in n], names
  assert all(cal for _, _, cal in w8a8.ranges(q).values())


def test_ranges_frozen_after_calibration():
  m, x = _model("opt")
  x2 = jax.random.randint(jax.random.key(2), x.shape, 0, 64)
  q = w8a8.quantize_model(m, "opt", w8a8.QuantConfig(8, 8))
  w8a8.calibrate(q, [x, x2])
  frozen = w8a8.ranges(q)
  assert len(frozen) == 2 * 14 + 2  # per layer 14 quantizers, plus the final LayerNorm's 2
  assert all(cal for _, _, cal in frozen.values())
  forward = nnx.jit(lambda model, inputs: model(inputs))
  for inputs in (x2 * 0 + 7, x):  # quantize mode, jitted and eager: the ranges do not move
    jax.block_until_ready(forward(q, inputs))
    jax.block_until_ready(q(inputs))
  assert w8a8.ranges(q) == frozen
  # Running min-max with momentum 0.9 over the two batches (checked on one quantizer).
  _, acts = capture(m, lambda mm: mm(x))
  _, acts2 = capture(m, lambda mm: mm(x2))
  lo = 0.9 * float(jnp.min(acts["layers.0.fc2"])) + 0.1 * float(jnp.min(acts2["layers.0.fc2"]))
  # fc2's output quantizer saw fc2 computed with int8 weights: close, not equal.
  np.testing.assert_allclose(frozen["layers.0.fc2.q_out"][0], lo, rtol=0.05)


@pytest.mark.parametrize("family,head", [("bert", ("mlm_transform", "mlm_layer_norm")),
                                         ("vit", ("classifier",))])
def test_head_and_gates_kept_float(family, head):
  m, x = _model(family, gate="linear" if family == "vit" else "mlp")
  q = w8a8.quantize_model(m, family, w8a8.QuantConfig(8, 8))
  for name in head:
    assert type(getattr(q, name)) is type(getattr(m, name))
    for a, b in zip(jax.tree.leaves(nnx.state(getattr(q, name))),
                    jax.tree.leaves(nnx.state(getattr(m, name)))):
      np.testing.assert_array_equal(a, b)
  gates_q = [g for _, g in nnx.iter_modules(q) if isinstance(g, AttentionGate)]
  gates_m = [g for _, g in nnx.iter_modules(m) if isinstance(g, AttentionGate)]
  assert len(gates_q) == len(gates_m) == 2
  for gq, gm in zip(gates_q, gates_m):
    for a, b in zip(jax.tree.leaves(nnx.state(gq)), jax.tree.leaves(nnx.state(gm))):
      np.testing.assert_array_equal(a, b)
  # ... while every quantized projection has an int8 grid (<= 255 distinct values).
  layer = q.bert.layers[0] if family == "bert" else q.layers[0]
  assert isinstance(layer.intermediate, w8a8.QuantOut)
  assert len(np.unique(np.asarray(layer.intermediate.inner.kernel[...]))) <= 255
  assert isinstance(layer.attention, w8a8.QuantAttention)


def test_opt_lm_head_is_float_embedding():
  m, x = _model("opt")
  q = w8a8.quantize_model(m, "opt", w8a8.QuantConfig(8, 8))
  np.testing.assert_array_equal(q.embed_tokens.embedding[...], m.embed_tokens.embedding[...])
  assert type(q.embed_tokens) is nnx.Embed


def test_percentile_ranges_are_inside_minmax():
  m, x = _model("opt")
  qm = w8a8.calibrate(w8a8.quantize_model(m, "opt", w8a8.QuantConfig(8, 8)), [x])
  qp = w8a8.calibrate(w8a8.quantize_model(m, "opt", w8a8.QuantConfig(8, 8, percentile=99.0)), [x])
  rm, rp = w8a8.ranges(qm), w8a8.ranges(qp)
  assert all(rp[k][0] >= rm[k][0] - 1e-6 and rp[k][1] <= rm[k][1] + 1e-6 for k in rm)
  assert any(rp[k][1] < rm[k][1] - 1e-6 for k in rm)


class _Holder(nnx.Module):
  """A one-layer "model" so that `quantize_model` finds the attention as a child."""

  def __init__(self, attn):
    self.attn = attn

  def __call__(self, x, **kw):
    return self.attn(x, **kw)


def test_quant_attention_with_quantizers_off_equals_the_float_layer():
  """Every gate x sink (none / learned / fixed) x GQA (K = N, K = N / 2) combination: the wrapped
  layer (weights in float, activation quantizers "off") gives the float layer's output, attention
  probabilities and context, with a causal and a padding mask."""
  from outeffhop_jax.nn import MultiHeadAttention
  from outeffhop_jax.nn.gates import GATES

  x = jax.random.normal(jax.random.key(0), (2, 6, 16))
  mask = jnp.arange(6)[None, None, None, :] < jnp.array([6, 4])[:, None, None, None]
  for gate in GATES:
    for sinks in ("none", "learned", 0.5):
      for kv_heads in (4, 2):
        layer = MultiHeadAttention(16, 4, num_kv_heads=kv_heads, gate=gate, sinks=sinks,
                                   normalizer="softmax1" if sinks == "none" else "softmax",
                                   rngs=nnx.Rngs(1))
        if sinks == "learned":
          layer.sinks[...] = jnp.array([0.3, -1.0, 2.0, 0.0])
        q = w8a8.quantize_model(_Holder(layer), "opt", w8a8.QuantConfig(weight_bits=None, act_bits=8))
        assert isinstance(q.attn, w8a8.QuantAttention) and q.attn.inner is not layer
        want_y, want = capture(layer, lambda m: m(x, mask=mask, causal=True), attention_probs=True)
        got_y, got = capture(q, lambda m: m(x, mask=mask, causal=True), attention_probs=True)
        case = f"gate={gate} sinks={sinks} K={kv_heads}"
        np.testing.assert_allclose(got_y, want_y, rtol=1e-6, atol=1e-6, err_msg=case)
        np.testing.assert_allclose(got["attn.attn_probs"], want["attn_probs"], rtol=1e-6,
                                   atol=1e-7, err_msg=case)
        np.testing.assert_allclose(got["attn.context"], want["context"], rtol=1e-6, atol=1e-6,
                                   err_msg=case)
        assert not any(k.startswith("attn.inner.") for k in got), sorted(got)
