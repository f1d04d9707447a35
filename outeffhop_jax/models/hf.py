"""Hugging Face import: transformers OPT / BERT (MLM and bare BertModel) / ViT -> our NNX models.

One name table, `HF_TABLE`, maps each HF state-dict name to our parameter path and a transform; it
works on a plain {name: numpy array} dict, so a safetensors reader needs no torch:

    cfg = config_from_hf(json.load(open("config.json")), normalizer="softmax1")
    model = model_from_state_dict(config_dict["architectures"][0], cfg, safetensors_numpy_dict)

`from_pretrained(folder, **overrides)` does exactly that from a checkpoint folder (config.json +
*.safetensors, read by the `safetensors` library: no torch). `from_hf(torch_model, **overrides)` does
the same from a live transformers model (torch is imported only there). Overrides replace config fields, e.g. normalizer="softmax1", gate="linear": parameters
the checkpoint lacks (gates, learned sinks) keep their fresh initialisation.
"""
from __future__ import annotations

import glob
import json
import os
import re
from typing import Any, Mapping

import numpy as np
from flax import nnx

from outeffhop_jax.models.bert import BERT, BERTEncoder
from outeffhop_jax.models.configs import BERTConfig, OPTConfig, ViTConfig
from outeffhop_jax.models.opt import OPT
from outeffhop_jax.models.vit import ViT

# Transforms get the HF array and our target shape. torch Linear weights are [out, in]; our kernels
# are [in, out] (attention: [D, N, H] and [N, H, D]); torch conv is [O, I, kh, kw], ours [kh, kw, I, O].
TRANSFORMS = {
    "copy": lambda x, shape: x.reshape(shape),
    "linear": lambda x, shape: x.T.reshape(shape),
    "conv": lambda x, shape: x.transpose(2, 3, 1, 0).reshape(shape),
}


def _linear(hf: str, ours: str):
  return ((f"{hf}.weight", f"{ours}.kernel", "linear"), (f"{hf}.bias", f"{ours}.bias", "copy"))


def _norm(hf: str, ours: str, weight="weight", bias="bias"):
  return ((f"{hf}.{weight}", f"{ours}.scale", "copy"), (f"{hf}.{bias}", f"{ours}.bias", "copy"))


def _rules(*groups):
  return tuple(rule for group in groups for rule in group)


_OPT_L, _OPT_O = "model.decoder.layers.{i}", "layers.{i}"
_BERT_L, _BERT_O = "bert.encoder.layer.{i}", "bert.layers.{i}"
_VIT_L, _VIT_O = "vit.encoder.layer.{i}", "layers.{i}"
_VIT_L5 = "vit.layers.{i}"  # transformers >= 5 module names (checkpoint files keep the names above)

# family -> ((HF name, our param path, transform), ...); "{i}" is the layer index.
HF_TABLE: dict[str, tuple[tuple[str, str, str], ...]] = {
    "opt": _rules(
        (("model.decoder.embed_tokens.weight", "embed_tokens.embedding", "copy"),
         ("model.decoder.embed_positions.weight", "embed_positions.embedding", "copy"),
         ("model.decoder.project_in.weight", "project_in.kernel", "linear"),
         ("model.decoder.project_out.weight", "project_out.kernel", "linear")),
        _norm("model.decoder.final_layer_norm", "final_layer_norm"),
        _linear(f"{_OPT_L}.self_attn.q_proj", f"{_OPT_O}.self_attn.query"),
        _linear(f"{_OPT_L}.self_attn.k_proj", f"{_OPT_O}.self_attn.key"),
        _linear(f"{_OPT_L}.self_attn.v_proj", f"{_OPT_O}.self_attn.value"),
        _linear(f"{_OPT_L}.self_attn.out_proj", f"{_OPT_O}.self_attn.out"),
        _norm(f"{_OPT_L}.self_attn_layer_norm", f"{_OPT_O}.self_attn_layer_norm"),
        _linear(f"{_OPT_L}.fc1", f"{_OPT_O}.fc1"),
        _linear(f"{_OPT_L}.fc2", f"{_OPT_O}.fc2"),
        _norm(f"{_OPT_L}.final_layer_norm", f"{_OPT_O}.final_layer_norm"),
    ),
    "bert": _rules(
        (("bert.embeddings.word_embeddings.weight", "bert.word_embeddings.embedding", "copy"),
         ("bert.embeddings.position_embeddings.weight", "bert.position_embeddings.embedding", "copy"),
         ("bert.embeddings.token_type_embeddings.weight", "bert.token_type_embeddings.embedding",
          "copy")),
        _norm("bert.embeddings.LayerNorm", "bert.embeddings_layer_norm"),
        _linear(f"{_BERT_L}.attention.self.query", f"{_BERT_O}.attention.query"),
        _linear(f"{_BERT_L}.attention.self.key", f"{_BERT_O}.attention.key"),
        _linear(f"{_BERT_L}.attention.self.value", f"{_BERT_O}.attention.value"),
        _linear(f"{_BERT_L}.attention.output.dense", f"{_BERT_O}.attention.out"),
        _norm(f"{_BERT_L}.attention.output.LayerNorm", f"{_BERT_O}.attention_layer_norm"),
        _linear(f"{_BERT_L}.intermediate.dense", f"{_BERT_O}.intermediate"),
        _linear(f"{_BERT_L}.output.dense", f"{_BERT_O}.output"),
        _norm(f"{_BERT_L}.output.LayerNorm", f"{_BERT_O}.output_layer_norm"),
        _linear("cls.predictions.transform.dense", "mlm_transform"),
        _norm("cls.predictions.transform.LayerNorm", "mlm_layer_norm"),
        (("cls.predictions.bias", "mlm_bias", "copy"),),
    ),
    "vit": _rules(
        (("vit.embeddings.cls_token", "cls_token", "copy"),
         ("vit.embeddings.position_embeddings", "position_embeddings", "copy"),
         ("vit.embeddings.patch_embeddings.projection.weight", "patch_embed.kernel", "conv"),
         ("vit.embeddings.patch_embeddings.projection.bias", "patch_embed.bias", "copy")),
        _norm(f"{_VIT_L}.layernorm_before", f"{_VIT_O}.layernorm_before"),
        _linear(f"{_VIT_L}.attention.attention.query", f"{_VIT_O}.attention.query"),
        _linear(f"{_VIT_L}.attention.attention.key", f"{_VIT_O}.attention.key"),
        _linear(f"{_VIT_L}.attention.attention.value", f"{_VIT_O}.attention.value"),
        _linear(f"{_VIT_L}.attention.output.dense", f"{_VIT_O}.attention.out"),
        _norm(f"{_VIT_L}.layernorm_after", f"{_VIT_O}.layernorm_after"),
        _linear(f"{_VIT_L}.intermediate.dense", f"{_VIT_O}.intermediate"),
        _linear(f"{_VIT_L}.output.dense", f"{_VIT_O}.output"),
        _norm(f"{_VIT_L5}.layernorm_before", f"{_VIT_O}.layernorm_before"),
        _linear(f"{_VIT_L5}.attention.q_proj", f"{_VIT_O}.attention.query"),
        _linear(f"{_VIT_L5}.attention.k_proj", f"{_VIT_O}.attention.key"),
        _linear(f"{_VIT_L5}.attention.v_proj", f"{_VIT_O}.attention.value"),
        _linear(f"{_VIT_L5}.attention.o_proj", f"{_VIT_O}.attention.out"),
        _norm(f"{_VIT_L5}.layernorm_after", f"{_VIT_O}.layernorm_after"),
        _linear(f"{_VIT_L5}.mlp.fc1", f"{_VIT_O}.intermediate"),
        _linear(f"{_VIT_L5}.mlp.fc2", f"{_VIT_O}.output"),
        _norm("vit.layernorm", "layernorm"),
        _linear("classifier", "classifier"),
    ),
}

# HF names with no parameter of their own here: tied copies, buffers, and BertModel's pooler (our
# encoder returns the last hidden state, as BertModel's first output).
IGNORED = {
    "opt": (r"lm_head\.weight",),
    "bert": (r"cls\.predictions\.decoder\.(weight|bias)", r"bert\.embeddings\.position_ids",
             r"bert\.pooler\..*"),
    "vit": (),
}

# HF architecture -> (table family, our model class, HF key prefix to add, our path prefix to drop).
ARCHITECTURES = {
    "OPTForCausalLM": ("opt", OPT, "", ""),
    "BertForMaskedLM": ("bert", BERT, "", ""),
    "BertModel": ("bert", BERTEncoder, "bert.", "bert."),
    "ViTForImageClassification": ("vit", ViT, "", ""),
}


def _unsupported(what):
  raise ValueError(f"unsupported Hugging Face option: {what}")


def config_from_hf(hf_config, **overrides):
  """OPTConfig / BERTConfig / ViTConfig from a transformers config or its config.json dict."""
  d: Mapping[str, Any] = hf_config if isinstance(hf_config, Mapping) else hf_config.to_dict()
  model_type = d.get("model_type")
  if model_type == "opt":
    if d.get("activation_function", "relu") != "relu":
      _unsupported(f"OPT activation_function={d['activation_function']!r} (only 'relu')")
    if not d.get("layer_norm_elementwise_affine", True) or d.get("_remove_final_layer_norm", False):
      _unsupported("OPT without affine LayerNorms or with _remove_final_layer_norm")
    if not d.get("tie_word_embeddings", True):
      _unsupported("OPT with an untied LM head (tie_word_embeddings=False)")
    proj = d.get("word_embed_proj_dim") or d["hidden_size"]
    fields = dict(vocab_size=d["vocab_size"], max_len=d["max_position_embeddings"],
                  d_model=d["hidden_size"], num_layers=d["num_hidden_layers"],
                  num_heads=d["num_attention_heads"], d_ff=d["ffn_dim"],
                  word_embed_proj_dim=None if proj == d["hidden_size"] else proj,
                  pre_layer_norm=d.get("do_layer_norm_before", True),
                  use_bias=d.get("enable_bias", True), dropout_rate=d.get("dropout", 0.1),
                  attention_dropout_rate=d.get("attention_dropout", 0.0),
                  init_std=d.get("init_std", 0.02), pad_token_id=d.get("pad_token_id", 1))
    cls = OPTConfig
  elif model_type == "bert":
    if d.get("hidden_act", "gelu") != "gelu":
      _unsupported(f"BERT hidden_act={d['hidden_act']!r} (only 'gelu')")
    if d.get("position_embedding_type", "absolute") != "absolute" or d.get("is_decoder", False):
      _unsupported("BERT with relative position embeddings or as a decoder")
    fields = dict(vocab_size=d["vocab_size"], max_len=d["max_position_embeddings"],
                  type_vocab_size=d["type_vocab_size"], d_model=d["hidden_size"],
                  num_layers=d["num_hidden_layers"], num_heads=d["num_attention_heads"],
                  d_ff=d["intermediate_size"], layer_norm_eps=d["layer_norm_eps"],
                  dropout_rate=d.get("hidden_dropout_prob", 0.1),
                  attention_dropout_rate=d.get("attention_probs_dropout_prob", 0.1),
                  init_std=d.get("initializer_range", 0.02), pad_token_id=d.get("pad_token_id", 0))
    cls = BERTConfig
  elif model_type == "vit":
    if d.get("hidden_act", "gelu") != "gelu":
      _unsupported(f"ViT hidden_act={d['hidden_act']!r} (only 'gelu')")
    size, patch = d["image_size"], d["patch_size"]
    if not isinstance(size, int) or not isinstance(patch, int):
      _unsupported(f"ViT with non-square image_size={size!r} / patch_size={patch!r}")
    num_classes = len(d["id2label"]) if d.get("id2label") else d.get("num_labels", 2)
    fields = dict(image_size=size, patch_size=patch, num_channels=d["num_channels"],
                  num_classes=num_classes, d_model=d["hidden_size"],
                  num_layers=d["num_hidden_layers"], num_heads=d["num_attention_heads"],
                  d_ff=d["intermediate_size"], qkv_bias=d.get("qkv_bias", True),
                  layer_norm_eps=d["layer_norm_eps"], dropout_rate=d.get("hidden_dropout_prob", 0.0),
                  attention_dropout_rate=d.get("attention_probs_dropout_prob", 0.0),
                  init_std=d.get("initializer_range", 0.02))
    cls = ViTConfig
  else:
    raise ValueError(f"unsupported Hugging Face model_type {model_type!r}; supported: 'opt', 'bert', "
                     "'vit'")
  return cls(**{**fields, **overrides})


def _compile(pattern: str) -> re.Pattern:
  return re.compile(re.escape(pattern).replace(r"\{i\}", r"(?P<i>\d+)") + r"\Z")


def params_by_path(model: nnx.Module) -> dict[str, nnx.Param]:
  """{"layers.0.fc1.kernel": Param, ...} for every nnx.Param of `model`."""
  return {".".join(str(p) for p in path): node for path, node in nnx.iter_graph(model)
          if isinstance(node, nnx.Param)}


def load_state_dict(model: nnx.Module, state_dict: Mapping[str, Any], architecture: str, *,
                    allow_missing=(r".*\.gate\..*", r".*\.sinks")):
  """Copies a HF state dict ({name: array}) into `model` in place through `HF_TABLE`.

  Raises ValueError on an unknown HF name, a shape mismatch, or one of our parameters left
  unloaded (except those matching `allow_missing`: gates and learned sinks, new in a fine-tune).
  """
  if architecture not in ARCHITECTURES:
    raise ValueError(f"unsupported Hugging Face architecture {architecture!r}; supported: "
                     f"{sorted(ARCHITECTURES)}")
  family, _, hf_prefix, our_prefix = ARCHITECTURES[architecture]
  rules = [(_compile(hf), ours, fn) for hf, ours, fn in HF_TABLE[family]]
  ignored = [re.compile(p + r"\Z") for p in IGNORED[family]]
  params = params_by_path(model)
  loaded, unknown = set(), []
  for raw_name, array in state_dict.items():
    name = hf_prefix + raw_name
    if any(p.match(name) for p in ignored):
      continue
    for pattern, ours, fn in rules:
      m = pattern.match(name)
      if m:
        break
    else:
      unknown.append(raw_name)
      continue
    path = ours.format(**m.groupdict())
    path = path[len(our_prefix):] if our_prefix and path.startswith(our_prefix) else path
    if path not in params:
      unknown.append(raw_name)
      continue
    var = params[path]
    value = TRANSFORMS[fn](np.asarray(array), var.shape)
    var.set_value(np.asarray(value, dtype=var.dtype))
    loaded.add(path)
  missing = [p for p in params if p not in loaded
             and not any(re.fullmatch(a, p) for a in allow_missing)]
  if unknown or missing:
    raise ValueError(f"{architecture} state dict does not match the model: HF names with no "
                     f"parameter here {unknown[:10]}{'...' if len(unknown) > 10 else ''}; our "
                     f"parameters not in the state dict {missing[:10]}")
  return model


def model_from_state_dict(architecture: str, config, state_dict: Mapping[str, Any], *, seed=0):
  """Builds our model for `architecture` from `config` and loads the HF `state_dict` into it."""
  if architecture not in ARCHITECTURES:
    raise ValueError(f"unsupported Hugging Face architecture {architecture!r}; supported: "
                     f"{sorted(ARCHITECTURES)}")
  model = ARCHITECTURES[architecture][1](config, rngs=nnx.Rngs(seed))
  return load_state_dict(model, state_dict, architecture)


def from_hf(hf_model, *, seed: int = 0, **overrides):
  """Converts a transformers PyTorch model (config and weights) into our NNX model.

  Supported: OPTForCausalLM -> OPT, BertForMaskedLM -> BERT, BertModel -> BERTEncoder,
  ViTForImageClassification -> ViT. `overrides` replace config fields (normalizer, gate, sinks,
  dtype, dropout_rate, ...). Weights are copied in float32 then cast to param_dtype.
  """
  import torch  # lazily: only the HF import needs torch

  architecture = type(hf_model).__name__
  if architecture not in ARCHITECTURES:
    raise ValueError(f"unsupported Hugging Face architecture {architecture!r}; supported: "
                     f"{sorted(ARCHITECTURES)}")
  config = config_from_hf(hf_model.config, **overrides)
  with torch.no_grad():
    state_dict = {k: v.detach().to(torch.float32).cpu().numpy()
                  for k, v in hf_model.state_dict().items() if v.is_floating_point()}
  return model_from_state_dict(architecture, config, state_dict, seed=seed)


def read_safetensors(folder: str) -> dict[str, np.ndarray]:
  """{name: numpy array} from every *.safetensors file of `folder` (sharded checkpoints too)."""
  from safetensors.numpy import load_file  # lazily: only checkpoint reading needs it

  files = sorted(glob.glob(os.path.join(folder, "*.safetensors")))
  if not files:
    raise FileNotFoundError(f"from_pretrained: no *.safetensors file in {folder!r} (a Hugging Face "
                            "checkpoint folder holds config.json and model.safetensors)")
  state = {}
  for f in files:
    state.update(load_file(f))
  return state


def _bare_bert_names(state: Mapping[str, Any]) -> dict[str, Any]:
  # BertModel files are saved without the "bert." prefix, but some (e.g. from BertPreTrainedModel
  # subclasses) keep it; ARCHITECTURES["BertModel"] adds it, so strip it where present.
  return {k[len("bert."):] if k.startswith("bert.") else k: v for k, v in state.items()}


def from_pretrained(path: str, *, seed: int = 0, **overrides):
  """Builds our model from a Hugging Face checkpoint folder, without torch.

  Args:
    path: folder with config.json (its "architectures"[0] picks the model: OPTForCausalLM -> OPT,
      BertForMaskedLM -> BERT, BertModel -> BERTEncoder, ViTForImageClassification -> ViT) and
      model.safetensors (or shards).
    seed: seeds the parameters the checkpoint lacks.
    **overrides: config fields. The normalizer defaults to "softmax" (what the checkpoint was
      trained with); normalizer="softmax1", gate="linear", sinks="learned", ... change the
      attention for fine-tuning. Parameters the checkpoint lacks keep their initialisation: a
      Qualcomm gate starts open at gate_init (bias logit(gate_init), so the output moves at step 0),
      learned sinks start at 0 (softmax1).
  Returns:
    The NNX model with float32 weights cast to the config's param_dtype.
  """
  config_path = os.path.join(path, "config.json")
  if not os.path.isfile(config_path):
    raise FileNotFoundError(f"from_pretrained: {config_path!r} does not exist; `path` must be a "
                            "Hugging Face checkpoint folder (config.json + model.safetensors)")
  with open(config_path) as f:
    hf_config = json.load(f)
  architectures = hf_config.get("architectures") or []
  if not architectures or architectures[0] not in ARCHITECTURES:
    raise ValueError(f"from_pretrained: config.json architectures={architectures!r}; supported: "
                     f"{sorted(ARCHITECTURES)}")
  architecture = architectures[0]
  if not glob.glob(os.path.join(path, "*.safetensors")):
    raise FileNotFoundError(f"from_pretrained: no *.safetensors file in {path!r}")
  try:
    config = config_from_hf(hf_config, **{"normalizer": "softmax", **overrides})
  except KeyError as e:
    raise ValueError(f"from_pretrained: {config_path!r} lacks the field {e.args[0]!r}") from None
  state = {k: v for k, v in read_safetensors(path).items() if np.issubdtype(v.dtype, np.floating)}
  if architecture == "BertModel":
    state = _bare_bert_names(state)
  return model_from_state_dict(architecture, config, state, seed=seed)
