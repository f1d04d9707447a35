"""Vision Transformer classifier (as HF ViTForImageClassification), pre-LayerNorm, CLS token.

    x_BPD = conv_PxP(images_BHWC) (stride P), flattened row-major; x = [cls; x] + pos_emb
    block:  x += attn_out(attn(LN_before(x)));  x += ffn_out(gelu(intermediate(LN_after(x))))
    logits_BC = classifier(LN(x)[:, 0])
Images are channels-last [B, H, W, C] (HF takes [B, C, H, W]); only the configured size is accepted.

Intermediates (sown only under `nn.capture`): per layer "layers.{i}.layernorm_before",
".attention_output", ".layernorm_after", ".ffn_output", ".block_output", the attention's
".attention.context" (".attention.attn_probs" if asked); top-level "layernorm".
`OUTLIER_MODULES` is the module set of docs/metrics.md (block outputs, FFN outputs, LayerNorm outputs).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from outeffhop_jax.models import _layers
from outeffhop_jax.models.configs import ViTConfig
from outeffhop_jax.nn import _init

OUTLIER_MODULES = ("block_output", "ffn_output", "layernorm_before", "layernorm_after", "layernorm")


class ViTBlock(_layers.Sowing):
  """One pre-LayerNorm ViT layer."""

  def __init__(self, cfg: ViTConfig, *, rngs: nnx.Rngs):
    self.layernorm_before = _layers.layer_norm(cfg.d_model, cfg, rngs)
    self.attention = _layers.attention(cfg, rngs, use_bias=cfg.qkv_bias)
    self.layernorm_after = _layers.layer_norm(cfg.d_model, cfg, rngs)
    self.intermediate = _layers.dense(cfg.d_model, cfg.d_ff, ("embed", "mlp"), cfg, rngs)
    self.output = _layers.dense(cfg.d_ff, cfg.d_model, ("mlp", "embed"), cfg, rngs)
    self.dropout = _layers.dropout(cfg.dropout_rate, rngs)
    self.init_capture(cfg)

  def __call__(self, x_BTD, deterministic):
    h = self.record("layernorm_before", self.layernorm_before(x_BTD))
    h = self.record("attention_output", self.attention(h, deterministic=deterministic))
    x_BTD = x_BTD + self.dropout(h, deterministic=deterministic)
    h = self.record("layernorm_after", self.layernorm_after(x_BTD))
    h = self.output(jax.nn.gelu(self.intermediate(h), approximate=False))
    x_BTD = x_BTD + self.dropout(self.record("ffn_output", h), deterministic=deterministic)
    return self.record("block_output", x_BTD)


class ViT(_layers.Sowing):
  """__call__(pixel_values, *, deterministic=True) -> logits_BC float32 (pixel_values [B, H, W, C])."""

  def __init__(self, config: ViTConfig, *, rngs: nnx.Rngs):
    cfg = self.config = config
    P, D = cfg.patch_size, cfg.d_model
    dtype, param_dtype = _init.as_dtype(cfg.dtype), _init.as_dtype(cfg.param_dtype)
    self.patch_embed = nnx.Conv(
        cfg.num_channels, D, kernel_size=(P, P), strides=(P, P), padding="VALID", dtype=dtype,
        param_dtype=param_dtype,
        kernel_init=_init.partitioned(nnx.initializers.lecun_normal(), (None, None, None, "embed")),
        bias_init=_init.partitioned(_init.zeros, ("embed",)), rngs=rngs)
    init = _init.normal(cfg.init_std)
    self.cls_token = _init.param(rngs, init, (1, 1, D), (None, None, "embed"), param_dtype)
    self.position_embeddings = _init.param(rngs, init, (1, cfg.num_patches + 1, D),
                                           (None, None, "embed"), param_dtype)
    self.layers = nnx.List([ViTBlock(cfg, rngs=rngs) for _ in range(cfg.num_layers)])
    self.layernorm = _layers.layer_norm(D, cfg, rngs)
    self.classifier = _layers.dense(D, cfg.num_classes, ("embed", None), cfg, rngs)
    self.dropout = _layers.dropout(cfg.dropout_rate, rngs)
    self.init_capture(cfg)

  def check_images(self, images_BHWC):
    cfg = self.config
    want = (cfg.image_size, cfg.image_size, cfg.num_channels)
    shape = tuple(getattr(images_BHWC, "shape", ()))
    if len(shape) != 4 or shape[1:] != want:
      raise ValueError(f"pixel_values must have shape [batch, {want[0]}, {want[1]}, {want[2]}] "
                       f"(channels last; config image_size={cfg.image_size}, "
                       f"num_channels={cfg.num_channels}), got {shape}")
    if not jnp.issubdtype(images_BHWC.dtype, jnp.floating):
      raise ValueError(f"pixel_values must be floating point, got dtype {images_BHWC.dtype}")

  def channels_last(self, pixel_values):
    """[B, H, W, C] as given, or Hugging Face's [B, C, H, W] (what its image processors return)
    transposed to channels last when the shape says so unambiguously."""
    cfg = self.config
    shape = tuple(getattr(pixel_values, "shape", ()))
    hwc = (cfg.image_size, cfg.image_size, cfg.num_channels)
    chw = (cfg.num_channels, cfg.image_size, cfg.image_size)
    if len(shape) == 4 and shape[1:] == chw and chw != hwc:
      return jnp.transpose(pixel_values, (0, 2, 3, 1))
    return pixel_values

  def __call__(self, pixel_values, *, deterministic: bool = True):
    """pixel_values [B, H, W, C] float (or HF's [B, C, H, W]) -> logits_BC float32. HF's argument
    name; no `labels=` (the call always returns logits)."""
    images_BHWC = self.channels_last(pixel_values)
    self.check_images(images_BHWC)
    x = self.patch_embed(images_BHWC)                      # [B, H/P, W/P, D]
    B, D = x.shape[0], x.shape[-1]
    x_BPD = x.reshape(B, x.shape[1] * x.shape[2], D)       # row-major patches, as HF's flatten(2)
    cls_B1D = jnp.broadcast_to(self.cls_token[...].astype(x_BPD.dtype), (B, 1, D))
    x_BTD = jnp.concatenate([cls_B1D, x_BPD], axis=1) + self.position_embeddings[...].astype(
        x_BPD.dtype)
    x_BTD = self.dropout(x_BTD, deterministic=deterministic)
    for block in self.layers:
      x_BTD = block(x_BTD, deterministic)
    x_BTD = self.record("layernorm", self.layernorm(x_BTD))
    return self.classifier(x_BTD[:, 0]).astype(jnp.float32)
