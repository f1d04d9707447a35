"""Model behaviour: causality, padding invariance, image size, option combinations, capture, specs."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from outeffhop_jax import models
from outeffhop_jax.models import BERT, OPT, BERTConfig, OPTConfig, ViT, ViTConfig


def _ids(B=2, T=8, V=512, seed=0):
  return jax.random.randint(jax.random.key(seed), (B, T), 2, V)


def _images(B=2, size=32, seed=0):
  return jax.random.normal(jax.random.key(seed), (B, size, size, 3))


def test_opt_is_causal():
  model = OPT(OPTConfig.from_preset("tiny", normalizer="softmax1", gate="linear"), rngs=nnx.Rngs(0))
  x_BTD = model.embed(_ids(B=1))
  t = 3
  grad = nnx.jit(nnx.grad(lambda x, m: jnp.sum(m.decode(x)[0, t])))(x_BTD, model)
  assert np.all(grad[0, t + 1:] == 0.0)      # exactly zero from every later position
  assert np.all(np.any(grad[0, :t + 1] != 0.0, axis=-1))


def test_opt_left_padding_matches_unpadded():
  model = OPT(OPTConfig.from_preset("tiny"), rngs=nnx.Rngs(0))
  ids = _ids(B=1, T=6)
  padded = jnp.concatenate([jnp.full((1, 3), 1), ids], axis=1)
  mask = jnp.concatenate([jnp.zeros((1, 3), int), jnp.ones((1, 6), int)], axis=1)
  fwd = nnx.jit(lambda m, ids, mask: m(ids, attention_mask=mask))
  np.testing.assert_allclose(fwd(model, padded, mask)[:, 3:], fwd(model, ids, jnp.ones_like(ids)),
                             atol=1e-5)


def test_bert_real_tokens_invariant_to_padding():
  model = BERT(BERTConfig.from_preset("tiny", normalizer="softmax1"), rngs=nnx.Rngs(0))
  ids = _ids(B=2, T=6)
  mask = jnp.array([[1] * 6, [1] * 4 + [0] * 2])
  fwd = nnx.jit(lambda m, ids, mask: m(ids, attention_mask=mask))
  base = fwd(model, ids, mask)
  # Different padding content and more padding tokens: real-token outputs unchanged.
  longer = jnp.concatenate([ids.at[1, 4:].set(7), jnp.full((2, 3), 9)], axis=1)
  longer_mask = jnp.concatenate([mask, jnp.zeros((2, 3), int)], axis=1)
  out = fwd(model, longer, longer_mask)
  np.testing.assert_allclose(out[0, :6], base[0], atol=1e-5)
  np.testing.assert_allclose(out[1, :4], base[1, :4], atol=1e-5)


def test_vit_accepts_configured_size_rejects_others():
  model = ViT(ViTConfig.from_preset("tiny"), rngs=nnx.Rngs(0))
  fwd = nnx.jit(lambda m, x: m(x))
  assert fwd(model, _images()).shape == (2, 10)
  # Hugging Face's channels-first pixel_values [B, C, H, W] give the channels-last result
  np.testing.assert_allclose(fwd(model, jnp.transpose(_images(), (0, 3, 1, 2))),
                             fwd(model, _images()), atol=1e-6)
  for bad in (_images(size=48), jnp.ones((2, 32, 32, 4)), jnp.ones((32, 32, 3))):
    with pytest.raises(ValueError, match="pixel_values"):
      model(bad)


# A covering set: every normalizer, gate and sink kind appears in each family's list at least once
# across families (the exhaustive product is run on the layer in tests/nn/test_attention.py).
COMBOS = {
    "opt": [("softmax1", "linear", "learned"), ("clipped:-0.03:1.0", "none", "none"),
            ("sparsemax", "mlp", "none"), ("softmax", "none", 0.0)],
    "bert": [("softmax", "mlp", 0.5), ("entmax:1.5", "linear", "none"),
             ("clipped1:-0.03:1.0", "none", "none"), ("softmax_n:4", "none", "learned")],
    "vit": [("softmax_n:4", "linear", "learned"), ("softmax", "mlp", "none"),
            ("softmax1", "none", "none")],
}
FAMILIES = {"opt": (OPT, OPTConfig, _ids), "bert": (BERT, BERTConfig, _ids),
            "vit": (ViT, ViTConfig, _images)}


@pytest.mark.parametrize("family,normalizer,gate,sinks",
                         [(f, *c) for f, cs in COMBOS.items() for c in cs])
def test_option_combinations_forward_backward_finite(family, normalizer, gate, sinks):
  cls, cfg_cls, inputs = FAMILIES[family]
  cfg = cfg_cls.from_preset("tiny", num_layers=1, normalizer=normalizer, gate=gate, sinks=sinks,
                            dropout_rate=0.1)
  model = cls(cfg, rngs=nnx.Rngs(0))
  x = inputs()
  loss, grads = nnx.jit(nnx.value_and_grad(lambda m, x: jnp.mean(m(x, deterministic=False) ** 2)))(
      model, x)
  assert np.isfinite(float(loss))
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))


def test_bf16_compute_with_f32_params():
  cfg = OPTConfig.from_preset("tiny", dtype="bfloat16", normalizer="softmax1", gate="linear")
  model = OPT(cfg, rngs=nnx.Rngs(0))
  logits = nnx.jit(lambda m, x: m(x))(model, _ids())
  assert logits.dtype == jnp.float32 and np.all(np.isfinite(logits))
  assert {p.dtype for p in jax.tree.leaves(nnx.state(model, nnx.Param))} == {jnp.dtype("float32")}


def test_opt_intermediates_only_under_capture():
  model = OPT(OPTConfig.from_preset("tiny"), rngs=nnx.Rngs(0))
  ids = _ids()
  fwd = nnx.jit(lambda m: m(ids))
  logits = fwd(model)
  assert not jax.tree.leaves(nnx.state(model, nnx.Intermediate))
  out, acts = models.capture(model, fwd, attention_probs=True)
  np.testing.assert_array_equal(out, logits)
  for i in range(2):
    for name in models.OUTLIER_MODULES["opt"]:
      assert acts[f"layers.{i}.{name}"].shape == (2, 8, 64)
    assert acts[f"layers.{i}.self_attn.attn_probs"].shape == (2, 4, 8, 8)
  assert "final_layer_norm" in acts
  assert not model.layers[0].capture_intermediates


def test_capture_switch_outside_capture_is_a_clear_error():
  model = OPT(OPTConfig.from_preset("tiny", capture_intermediates=True), rngs=nnx.Rngs(0))
  with pytest.raises(RuntimeError, match="nn.capture"):
    model(_ids())


def test_capture_names_bert_and_vit():
  bert = BERT(BERTConfig.from_preset("tiny"), rngs=nnx.Rngs(0))
  _, acts = models.capture(bert, nnx.jit(lambda m: m(_ids())))
  assert {"bert.layers.1.ffn_output", "bert.layers.1.ffn_layer_norm",
          "bert.embeddings_layer_norm"} <= set(acts)
  vit = ViT(ViTConfig.from_preset("tiny"), rngs=nnx.Rngs(0))
  _, acts = models.capture(vit, nnx.jit(lambda m: m(_images())))
  for name in ("block_output", "ffn_output", "layernorm_before", "layernorm_after"):
    assert acts[f"layers.0.{name}"].shape == (2, 17, 64)
  assert "layernorm" in acts


def test_logical_axis_names():
  model = nnx.eval_shape(lambda: OPT(OPTConfig.from_preset("tiny"), rngs=nnx.Rngs(0)))
  specs = nnx.get_partition_spec(nnx.state(model, nnx.Param))
  spec = lambda *path: tuple(jax.tree_util.tree_reduce(lambda a, k: a[k], path, specs).get_value())
  assert spec("embed_tokens", "embedding") == ("vocab", "embed")
  assert spec("layers", 0, "fc1", "kernel") == ("embed", "mlp")
  assert spec("layers", 0, "self_attn", "query", "kernel") == ("embed", "heads", "kv")


def test_presets_and_bad_configs():
  assert OPTConfig.from_preset("opt-350m").word_embed_proj_dim == 512
  with pytest.raises(ValueError, match="preset"):
    OPTConfig.from_preset("opt-7b")
  with pytest.raises(ValueError, match="gate"):
    OPTConfig.from_preset("tiny", gate="tanh")
  with pytest.raises(ValueError, match="normalizer"):
    BERTConfig.from_preset("tiny", normalizer="softmax3")
  with pytest.raises(ValueError, match="unknown"):
    ViTConfig.from_preset("tiny", width=3)
  with pytest.raises(ValueError, match="patch_size"):
    ViTConfig.from_preset("tiny", image_size=30)


@pytest.mark.parametrize("call,match", [
    (lambda m: m(jnp.ones((8,), int)), "input_ids"),
    (lambda m: m(jnp.ones((2, 8))), "input_ids"),
    (lambda m: m(jnp.ones((2, 200), int)), "max_len"),
    (lambda m: m(jnp.ones((2, 8), int), attention_mask=jnp.ones((2, 7))), "attention_mask"),
])
def test_bad_token_input(call, match):
  model = OPT(OPTConfig.from_preset("tiny"), rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match=match):
    call(model)
