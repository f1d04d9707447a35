"""OPT causal language model (as Hugging Face OPTForCausalLM), with a pluggable attention normalizer.

    h_BTD = embed_tokens(ids) [project_in] + embed_positions(pos + 2)
    block (pre-LN):  h += out_proj(attn(LN(h)));  h += fc2(relu(fc1(LN(h))))
    logits_BTV = [project_out](final_LN(h)) @ embed_tokens^T     (tied LM head)
Positions follow OPT: cumsum of the attention mask minus one (left padding works), offset by 2.
The attention mask is bool or 0/1 (`models._inputs`: other values are refused in eager calls).
opt-350m has post-LN blocks (pre_layer_norm=False), no final LayerNorm, and project_in/out.

Intermediates (sown only under `nn.capture`): per layer "layers.{i}.self_attn_layer_norm",
".out_proj", ".final_layer_norm" (the pre-FFN LayerNorm, OPT's name), ".fc2", ".block_output",
the attention's ".self_attn.context" (and ".self_attn.attn_probs" if asked); the top-level
"final_layer_norm". `OUTLIER_MODULES` lists the module set of docs/metrics.md by leaf name.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from outeffhop_jax.models import _inputs
from outeffhop_jax.models import _layers
from outeffhop_jax.models.configs import OPTConfig

POSITION_OFFSET = 2  # OPT reserves the first two rows of its position table
OUTLIER_MODULES = ("block_output", "fc2", "final_layer_norm", "out_proj", "self_attn_layer_norm")


class OPTBlock(_layers.Sowing):
  """One OPT decoder layer (pre- or post-LayerNorm as configured)."""

  def __init__(self, cfg: OPTConfig, *, rngs: nnx.Rngs):
    self.pre_ln = cfg.pre_layer_norm
    self.self_attn = _layers.attention(cfg, rngs, use_bias=cfg.use_bias)
    self.self_attn_layer_norm = _layers.layer_norm(cfg.d_model, cfg, rngs)
    self.fc1 = _layers.dense(cfg.d_model, cfg.d_ff, ("embed", "mlp"), cfg, rngs, use_bias=cfg.use_bias)
    self.fc2 = _layers.dense(cfg.d_ff, cfg.d_model, ("mlp", "embed"), cfg, rngs, use_bias=cfg.use_bias)
    self.final_layer_norm = _layers.layer_norm(cfg.d_model, cfg, rngs)
    self.dropout = _layers.dropout(cfg.dropout_rate, rngs)
    self.init_capture(cfg)

  def __call__(self, x_BTD, mask, deterministic):
    h = self.record("self_attn_layer_norm", self.self_attn_layer_norm(x_BTD)) if self.pre_ln else x_BTD
    h = self.record("out_proj", self.self_attn(h, mask=mask, causal=True, deterministic=deterministic))
    x_BTD = x_BTD + self.dropout(h, deterministic=deterministic)
    if not self.pre_ln:
      x_BTD = self.record("self_attn_layer_norm", self.self_attn_layer_norm(x_BTD))
    h = self.record("final_layer_norm", self.final_layer_norm(x_BTD)) if self.pre_ln else x_BTD
    h = self.record("fc2", self.fc2(jax.nn.relu(self.fc1(h))))
    x_BTD = x_BTD + self.dropout(h, deterministic=deterministic)
    if not self.pre_ln:
      x_BTD = self.record("final_layer_norm", self.final_layer_norm(x_BTD))
    return self.record("block_output", x_BTD)


class OPT(_layers.Sowing):
  """OPT decoder + tied LM head. __call__(input_ids, attention_mask=None, *, deterministic=True)
  -> logits_BTV float32; Hugging Face's argument names: input_ids [B, T] int, attention_mask [B, T]
  (1 / True = real token). No `labels=`: the call always returns logits (losses live in `train`)."""

  def __init__(self, config: OPTConfig, *, rngs: nnx.Rngs):
    cfg = self.config = config
    d_word = cfg.word_embed_proj_dim or cfg.d_model
    self.embed_tokens = _layers.embed(cfg.vocab_size, d_word, ("vocab", "embed"), cfg, rngs)
    self.embed_positions = _layers.embed(cfg.max_len + POSITION_OFFSET, cfg.d_model, (None, "embed"), cfg,
                                   rngs)
    needs_proj = d_word != cfg.d_model
    self.project_in = (_layers.dense(d_word, cfg.d_model, (None, "embed"), cfg, rngs, use_bias=False)
                       if needs_proj else None)
    self.project_out = (_layers.dense(cfg.d_model, d_word, ("embed", None), cfg, rngs, use_bias=False)
                        if needs_proj else None)
    self.layers = nnx.List([OPTBlock(cfg, rngs=rngs) for _ in range(cfg.num_layers)])
    self.final_layer_norm = _layers.layer_norm(cfg.d_model, cfg, rngs) if cfg.pre_layer_norm else None
    self.dropout = _layers.dropout(cfg.dropout_rate, rngs)
    self.init_capture(cfg)

  def __call__(self, input_ids, attention_mask=None, *, deterministic: bool = True):
    input_ids_BT, attention_mask_BT = input_ids, attention_mask
    _inputs.check_text_inputs(self.config, input_ids_BT, attention_mask_BT)
    x_BTD = self.embed(input_ids_BT, attention_mask_BT)
    return self.decode(x_BTD, attention_mask_BT=attention_mask_BT, deterministic=deterministic)

  def embed(self, input_ids_BT, attention_mask_BT=None):
    """Token (+ project_in) and learned position embeddings x_BTD."""
    B, T = input_ids_BT.shape
    if attention_mask_BT is None:
      pos_BT = jnp.broadcast_to(jnp.arange(T), (B, T))
    else:
      m = (jnp.asarray(attention_mask_BT) != 0).astype(jnp.int32)  # non-zero = real token
      pos_BT = jnp.cumsum(m, axis=1) * m - 1  # padding gets -1 (+ offset = row 1), as HF does
    x_BTD = self.embed_tokens(input_ids_BT)
    if self.project_in is not None:
      x_BTD = self.project_in(x_BTD)
    return x_BTD + self.embed_positions(pos_BT + POSITION_OFFSET)

  def decode(self, x_BTD, *, attention_mask_BT=None, deterministic: bool = True):
    """Decoder stack and tied LM head on embeddings x_BTD -> logits_BTV (float32)."""
    x_BTD = self.dropout(x_BTD, deterministic=deterministic)
    mask = _layers.key_padding_mask(attention_mask_BT)
    for block in self.layers:
      x_BTD = block(x_BTD, mask, deterministic)
    if self.final_layer_norm is not None:
      x_BTD = self.record("final_layer_norm", self.final_layer_norm(x_BTD))
    if self.project_out is not None:
      x_BTD = self.project_out(x_BTD)
    return self.embed_tokens.attend(x_BTD).astype(jnp.float32)
