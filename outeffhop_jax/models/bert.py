"""BERT encoder (as HF BertModel, without pooler) and masked LM (as HF BertForMaskedLM).

    h_BTD = LN(word(ids) + position(t) + token_type(tt))
    block (post-LN):  h = LN(h + attn_out(attn(h)));  h = LN(h + ffn_out(gelu(intermediate(h))))
    MLM: logits_BTV = LN(gelu(transform(h))) @ word^T + bias      (decoder tied to word embeddings)
Padding keys are masked (probability exactly 0), so outputs at real tokens do not depend on padding.

Intermediates (sown only under `nn.capture`): "embeddings_layer_norm"; per layer
"layers.{i}.attention_output" (output projection), ".attention_layer_norm", ".ffn_output" (FFN output,
HF's output.dense), ".ffn_layer_norm" (its LayerNorm = the block output), and the attention's
".attention.context" (".attention.attn_probs" if asked). `OUTLIER_MODULES` is the module set of docs/metrics.md.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from outeffhop_jax.models import _inputs
from outeffhop_jax.models import _layers
from outeffhop_jax.models.configs import BERTConfig

OUTLIER_MODULES = ("ffn_output", "ffn_layer_norm")


def gelu(x):
  return jax.nn.gelu(x, approximate=False)  # BERT's "gelu" is the exact erf form


class BERTBlock(_layers.Sowing):
  """One post-LayerNorm BERT layer."""

  def __init__(self, cfg: BERTConfig, *, rngs: nnx.Rngs):
    self.attention = _layers.attention(cfg, rngs)
    self.attention_layer_norm = _layers.layer_norm(cfg.d_model, cfg, rngs)
    self.intermediate = _layers.dense(cfg.d_model, cfg.d_ff, ("embed", "mlp"), cfg, rngs)
    self.output = _layers.dense(cfg.d_ff, cfg.d_model, ("mlp", "embed"), cfg, rngs)
    self.output_layer_norm = _layers.layer_norm(cfg.d_model, cfg, rngs)
    self.dropout = _layers.dropout(cfg.dropout_rate, rngs)
    self.init_capture(cfg)

  def __call__(self, x_BTD, mask, deterministic):
    h = self.record("attention_output", self.attention(x_BTD, mask=mask, deterministic=deterministic))
    x_BTD = self.attention_layer_norm(x_BTD + self.dropout(h, deterministic=deterministic))
    self.record("attention_layer_norm", x_BTD)
    h = self.record("ffn_output", self.output(gelu(self.intermediate(x_BTD))))
    x_BTD = self.output_layer_norm(x_BTD + self.dropout(h, deterministic=deterministic))
    return self.record("ffn_layer_norm", x_BTD)


class BERTEncoder(_layers.Sowing):
  """HF BertModel without its pooler: __call__(input_ids, attention_mask=None, token_type_ids=None,
  *, deterministic=True) -> last hidden state h_BTD (compute dtype); HF's argument names."""

  def __init__(self, config: BERTConfig, *, rngs: nnx.Rngs):
    cfg = self.config = config
    self.word_embeddings = _layers.embed(cfg.vocab_size, cfg.d_model, ("vocab", "embed"), cfg, rngs)
    self.position_embeddings = _layers.embed(cfg.max_len, cfg.d_model, (None, "embed"), cfg, rngs)
    self.token_type_embeddings = _layers.embed(cfg.type_vocab_size, cfg.d_model, (None, "embed"), cfg,
                                         rngs)
    self.embeddings_layer_norm = _layers.layer_norm(cfg.d_model, cfg, rngs)
    self.layers = nnx.List([BERTBlock(cfg, rngs=rngs) for _ in range(cfg.num_layers)])
    self.dropout = _layers.dropout(cfg.dropout_rate, rngs)
    self.init_capture(cfg)

  def __call__(self, input_ids, attention_mask=None, token_type_ids=None, *,
               deterministic: bool = True):
    input_ids_BT, attention_mask_BT, token_type_ids_BT = input_ids, attention_mask, token_type_ids
    _inputs.check_text_inputs(self.config, input_ids_BT, attention_mask_BT, token_type_ids_BT)
    T = input_ids_BT.shape[1]
    if token_type_ids_BT is None:
      token_type_ids_BT = jnp.zeros_like(input_ids_BT)
    x_BTD = (self.word_embeddings(input_ids_BT) + self.position_embeddings(jnp.arange(T))[None]
             + self.token_type_embeddings(token_type_ids_BT))
    x_BTD = self.record("embeddings_layer_norm", self.embeddings_layer_norm(x_BTD))
    x_BTD = self.dropout(x_BTD, deterministic=deterministic)
    mask = _layers.key_padding_mask(attention_mask_BT)
    for block in self.layers:
      x_BTD = block(x_BTD, mask, deterministic)
    return x_BTD


class BERT(_layers.Sowing):
  """BERT masked LM: __call__(input_ids, attention_mask=None, token_type_ids=None, *,
  deterministic=True) -> mlm_logits_BTV float32 (HF's argument names: input_ids [B, T] int,
  attention_mask [B, T] 1 = real token, token_type_ids [B, T]; no `labels=`, the call always returns
  logits). The encoder is `self.bert` (a `BERTEncoder`)."""

  def __init__(self, config: BERTConfig, *, rngs: nnx.Rngs):
    cfg = self.config = config
    self.bert = BERTEncoder(cfg, rngs=rngs)
    self.mlm_transform = _layers.dense(cfg.d_model, cfg.d_model, ("embed", None), cfg, rngs)
    self.mlm_layer_norm = _layers.layer_norm(cfg.d_model, cfg, rngs)
    self.mlm_bias = nnx.Param(_layers._init.partitioned(_layers._init.zeros, ("vocab",))(
        rngs.params(), (cfg.vocab_size,), _layers._init.as_dtype(cfg.param_dtype)))
    self.init_capture(cfg)

  def __call__(self, input_ids, attention_mask=None, token_type_ids=None, *,
               deterministic: bool = True):
    h_BTD = self.bert(input_ids, attention_mask, token_type_ids, deterministic=deterministic)
    h_BTD = self.mlm_layer_norm(gelu(self.mlm_transform(h_BTD)))
    logits_BTV = self.bert.word_embeddings.attend(h_BTD)
    return logits_BTV.astype(jnp.float32) + self.mlm_bias[...].astype(jnp.float32)
