"""Hugging Face import: logits parity with transformers (float32, eval), parameter counts, errors."""
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import torch
import transformers

from outeffhop_jax.models import BERT, OPT, BERTConfig, OPTConfig, ViT, ViTConfig, hf  # noqa: E402

TOL = 1e-4


def _hf(cls, config):
  torch.manual_seed(0)
  model = cls(config).eval()
  # HF's default init is small (std 0.02): scale the weights up so parity is tested on non-trivial
  # activations and attention patterns, not on near-uniform ones.
  with torch.no_grad():
    for name, p in model.named_parameters():
      if p.ndim >= 2:
        p.mul_(5.0)
  return model


def _np(x):
  return x.detach().numpy()


def _ids_and_mask(V, B=2, T=9, pad=3):
  rng = np.random.RandomState(0)
  ids = rng.randint(2, V, (B, T))
  mask = np.ones((B, T), np.int64)
  return ids, mask, pad


@pytest.mark.parametrize("post_ln_with_projection", [False, True])
def test_opt_parity_with_left_padding(post_ln_with_projection):
  extra = dict(do_layer_norm_before=False, word_embed_proj_dim=16) if post_ln_with_projection else {}
  cfg = transformers.OPTConfig(vocab_size=97, hidden_size=32, num_hidden_layers=2,
                               num_attention_heads=4, ffn_dim=64, max_position_embeddings=32,
                               **extra)
  ref = _hf(transformers.OPTForCausalLM, cfg)
  ours = hf.from_hf(ref, normalizer="softmax")
  ids, mask, pad = _ids_and_mask(97)
  mask[1, :pad] = 0  # left padding, as OPT generation uses
  with torch.no_grad():
    want = _np(ref(torch.tensor(ids), attention_mask=torch.tensor(mask)).logits)
  got = np.asarray(ours(jnp.asarray(ids), attention_mask=jnp.asarray(mask)))
  assert np.abs(got[0] - want[0]).max() < TOL
  assert np.abs(got[1, pad:] - want[1, pad:]).max() < TOL
  assert np.abs(want).max() > 0.25  # not a trivially tiny output


def _bert_cfg():
  return transformers.BertConfig(vocab_size=97, hidden_size=32, num_hidden_layers=2,
                                 num_attention_heads=4, intermediate_size=64,
                                 max_position_embeddings=32)


def test_bert_mlm_parity_with_padding():
  ref = _hf(transformers.BertForMaskedLM, _bert_cfg())
  ours = hf.from_hf(ref, normalizer="softmax")
  assert isinstance(ours, BERT)
  ids, mask, pad = _ids_and_mask(97)
  mask[1, -pad:] = 0
  tt = np.zeros_like(ids)
  tt[:, 5:] = 1
  with torch.no_grad():
    want = _np(ref(torch.tensor(ids), attention_mask=torch.tensor(mask),
                   token_type_ids=torch.tensor(tt)).logits)
  got = np.asarray(ours(jnp.asarray(ids), attention_mask=jnp.asarray(mask),
                        token_type_ids=jnp.asarray(tt)))
  assert np.abs(got[0] - want[0]).max() < TOL
  assert np.abs(got[1, :-pad] - want[1, :-pad]).max() < TOL


def test_bare_bert_model_parity_and_numpy_state_dict_path():
  ref = _hf(transformers.BertModel, _bert_cfg())
  ours = hf.from_hf(ref, normalizer="softmax")
  ids, mask, pad = _ids_and_mask(97)
  mask[0, -pad:] = 0
  with torch.no_grad():
    want = _np(ref(torch.tensor(ids), attention_mask=torch.tensor(mask)).last_hidden_state)
  got = np.asarray(ours(jnp.asarray(ids), attention_mask=jnp.asarray(mask)))
  assert np.abs(got[1] - want[1]).max() < TOL
  assert np.abs(got[0, :-pad] - want[0, :-pad]).max() < TOL
  # The torch-free path (what a safetensors reader uses): config.json dict + numpy arrays.
  config = hf.config_from_hf(ref.config.to_dict(), normalizer="softmax")
  state = {k: _np(v) for k, v in ref.state_dict().items()}
  again = hf.model_from_state_dict("BertModel", config, state)
  np.testing.assert_array_equal(np.asarray(again(jnp.asarray(ids), attention_mask=jnp.asarray(mask))),
                                got)


def test_vit_parity():
  cfg = transformers.ViTConfig(image_size=32, patch_size=8, num_channels=3, hidden_size=32,
                               num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                               num_labels=5)
  ref = _hf(transformers.ViTForImageClassification, cfg)
  ours = hf.from_hf(ref, normalizer="softmax")
  images = np.random.RandomState(0).randn(2, 3, 32, 32).astype(np.float32)
  with torch.no_grad():
    want = _np(ref(torch.tensor(images)).logits)
  got = np.asarray(ours(jnp.asarray(images.transpose(0, 2, 3, 1))))
  assert got.shape == (2, 5)
  assert np.abs(got - want).max() < TOL
  # Checkpoint files keep the pre-transformers-5 names; the same table reads them.
  legacy = {".attention.q_proj.": ".attention.attention.query.",
            ".attention.k_proj.": ".attention.attention.key.",
            ".attention.v_proj.": ".attention.attention.value.",
            ".attention.o_proj.": ".attention.output.dense.", ".mlp.fc1.": ".intermediate.dense.",
            ".mlp.fc2.": ".output.dense.", "vit.layers.": "vit.encoder.layer."}
  state = {}
  for name, value in ref.state_dict().items():
    for new, old in legacy.items():
      name = name.replace(new, old)
    state[name] = _np(value)
  assert "vit.encoder.layer.0.attention.attention.query.weight" in state
  again = hf.model_from_state_dict("ViTForImageClassification",
                                   hf.config_from_hf(ref.config.to_dict(), normalizer="softmax"),
                                   state)
  np.testing.assert_array_equal(np.asarray(again(jnp.asarray(images.transpose(0, 2, 3, 1)))), got)


def test_import_with_softmax1_and_gate_for_finetuning():
  ref = _hf(transformers.OPTForCausalLM, transformers.OPTConfig(
      vocab_size=97, hidden_size=32, num_hidden_layers=1, num_attention_heads=4, ffn_dim=64,
      max_position_embeddings=32))
  ours = hf.from_hf(ref, normalizer="softmax1", gate="linear", sinks="learned")
  assert ours.config.normalizer == "softmax1" and ours.layers[0].self_attn.gate is not None
  assert np.all(np.isfinite(ours(jnp.ones((1, 5), jnp.int32))))



def _our_count(cls, cfg):
  abstract = nnx.eval_shape(lambda: cls(cfg, rngs=nnx.Rngs(0)))
  return sum(int(np.prod(v.shape)) for _, v in nnx.to_flat_state(nnx.state(abstract, nnx.Param)))


def _hf_count(cls, cfg):
  with torch.device("meta"):
    return cls(cfg).num_parameters()


def test_parameter_counts_match_hf():
  cases = [
      (OPT, OPTConfig.from_preset("opt-125m"), transformers.OPTForCausalLM,
       transformers.OPTConfig()),
      (BERT, BERTConfig.from_preset("bert-base"), transformers.BertForMaskedLM,
       transformers.BertConfig()),
      (ViT, ViTConfig.from_preset("vit-s16"), transformers.ViTForImageClassification,
       transformers.ViTConfig(hidden_size=384, num_hidden_layers=12, num_attention_heads=6,
                              intermediate_size=1536, num_labels=1000)),
  ]
  for cls, cfg, hf_cls, hf_cfg in cases:
    assert _our_count(cls, cfg) == _hf_count(hf_cls, hf_cfg), cls.__name__
  assert _our_count(OPT, OPTConfig.from_preset("opt-125m")) == 125_239_296


def test_unsupported_architectures_and_options():
  gpt2 = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=1, n_embd=16, n_head=2,
                                                              vocab_size=50, n_positions=16))
  with pytest.raises(ValueError, match="unsupported Hugging Face architecture 'GPT2LMHeadModel'"):
    hf.from_hf(gpt2)
  with pytest.raises(ValueError, match="hidden_act"):
    hf.config_from_hf({**_bert_cfg().to_dict(), "hidden_act": "relu"})
  with pytest.raises(ValueError, match="model_type"):
    hf.config_from_hf({"model_type": "llama"})
  ref = _hf(transformers.BertModel, _bert_cfg())
  state = {k: _np(v) for k, v in ref.state_dict().items()}
  state["encoder.layer.0.extra.weight"] = np.zeros(3)
  with pytest.raises(ValueError, match="extra"):
    hf.model_from_state_dict("BertModel", hf.config_from_hf(ref.config), state)
