"""Frozen model configs with named presets: `OPTConfig.from_preset("opt-125m", normalizer="softmax1")`.

Every config carries the attention options studied by the project (normalizer, gate, sinks,
attention implementation) and the compute / parameter dtypes (e.g. bf16 compute, f32 params).
Invalid options raise ValueError at construction, before any model is built: every size field
(`SIZE_FIELDS`: layers, heads, widths, vocabulary, lengths, ...) must be an int > 0.
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax.numpy as jnp

from outeffhop_jax import ops
from outeffhop_jax.ops import _checks
from outeffhop_jax.nn.attention import parse_sinks
from outeffhop_jax.nn.gates import check_gate
from outeffhop_jax.nn.gates import logit as gate_logit


@dataclasses.dataclass(frozen=True, kw_only=True)
class AttentionOptions:
  """Fields shared by every model config.

  normalizer: `ops.get_normalizer` spec ("softmax", "softmax1", "clipped:-0.03:1", "sigmoid", ...).
  gate: "none" | "linear" | "mlp" (gated attention, Bondarenko et al.) | "output_headwise" |
    "output_elementwise" (output gate, Qiu et al.); gate_init: pi_init, the initial gate probability
    (every gate's bias starts at logit(pi_init); see `nn.gates`).
  sinks: "none" | "learned" (per head, init 0) | a fixed sink logit (float).
  attention_impl: `ops.dot_product_attention` implementation ("reference", "blockwise", None, ...).
  dtype: compute dtype name ("float32", "bfloat16"); param_dtype: parameter dtype name.
  capture_intermediates / capture_attention_probs: initial capture switches (see `nn.capture`).
  """
  normalizer: str = "softmax"
  gate: str = "none"
  gate_init: float = 0.25
  sinks: Any = "none"
  attention_impl: str | None = "reference"
  dtype: str = "float32"
  param_dtype: str = "float32"
  capture_intermediates: bool = False
  capture_attention_probs: bool = False

  PRESETS: ClassVar[dict[str, dict[str, Any]]] = {}
  # Fields that are sizes: each must be an int > 0 (checked first, before any division by them).
  SIZE_FIELDS: ClassVar[tuple[str, ...]] = ("d_model", "num_heads", "num_layers", "d_ff")

  def __post_init__(self):
    for name in self.SIZE_FIELDS:
      _checks.check_size(getattr(self, name), f"{type(self).__name__}.{name}")
    ops.get_normalizer(self.normalizer)
    check_gate(self.gate)
    if self.gate != "none":
      gate_logit(self.gate_init)  # ValueError unless 0 < gate_init < 1 (NaN included)
    if parse_sinks(self.sinks) is not None and ops.get_normalizer(self.normalizer).kind != "sink":
      raise ValueError(f"sinks={self.sinks!r} needs a softmax-family normalizer, got {self.normalizer!r}")
    ops.attention.check_implementation(self.normalizer, self.attention_impl)
    for name in ("dtype", "param_dtype"):
      try:
        jnp.dtype(getattr(self, name))
      except TypeError:
        raise ValueError(f"{name} must name a dtype, got {getattr(self, name)!r}") from None
    if self.d_model % self.num_heads:
      raise ValueError(f"d_model ({self.d_model}) must be divisible by num_heads ({self.num_heads})")
    for name in ("dropout_rate", "attention_dropout_rate"):
      if not 0.0 <= getattr(self, name) < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")

  @property
  def head_dim(self) -> int:
    return self.d_model // self.num_heads

  def attention_kwargs(self) -> dict[str, Any]:
    """Keyword arguments for `nn.MultiHeadAttention` from this config."""
    return dict(normalizer=self.normalizer, gate=self.gate, gate_init=self.gate_init,
                sinks=self.sinks, implementation=self.attention_impl,
                dropout_rate=self.attention_dropout_rate, dtype=self.dtype,
                param_dtype=self.param_dtype)

  @classmethod
  def from_preset(cls, name: str, **overrides):
    """The preset `name` (see `PRESETS`) with fields replaced by `overrides`."""
    if name not in cls.PRESETS:
      raise ValueError(f"unknown {cls.__name__} preset {name!r}; available: {sorted(cls.PRESETS)}")
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
      raise ValueError(f"unknown {cls.__name__} field(s) {unknown}; fields: {sorted(fields)}")
    return cls(**{**cls.PRESETS[name], **overrides})

  def replace(self, **changes):
    return dataclasses.replace(self, **changes)


@dataclasses.dataclass(frozen=True, kw_only=True)
class OPTConfig(AttentionOptions):
  """OPT decoder (as HF OPTForCausalLM). Learned positions are offset by 2 (OPT's convention).

  word_embed_proj_dim: embedding width if it differs from d_model (opt-350m: project_in/out).
  pre_layer_norm: OPT's do_layer_norm_before (False only for opt-350m: post-LayerNorm blocks).
  """
  vocab_size: int = 512
  max_len: int = 128
  d_model: int = 64
  num_layers: int = 2
  num_heads: int = 4
  d_ff: int = 256
  word_embed_proj_dim: int | None = None
  pre_layer_norm: bool = True
  use_bias: bool = True
  layer_norm_eps: float = 1e-5
  dropout_rate: float = 0.0
  attention_dropout_rate: float = 0.0
  init_std: float = 0.02
  pad_token_id: int = 1

  SIZE_FIELDS: ClassVar[tuple[str, ...]] = AttentionOptions.SIZE_FIELDS + ("vocab_size", "max_len")
  PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
      "tiny": {},
      "opt-125m": dict(vocab_size=50272, max_len=2048, d_model=768, num_layers=12, num_heads=12,
                       d_ff=3072, dropout_rate=0.1),
      "opt-350m": dict(vocab_size=50272, max_len=2048, d_model=1024, num_layers=24, num_heads=16,
                       d_ff=4096, word_embed_proj_dim=512, pre_layer_norm=False, dropout_rate=0.1),
      "opt-1.3b": dict(vocab_size=50272, max_len=2048, d_model=2048, num_layers=24, num_heads=32,
                       d_ff=8192, dropout_rate=0.1),
  }

  def __post_init__(self):
    super().__post_init__()
    if self.word_embed_proj_dim is not None:
      _checks.check_size(self.word_embed_proj_dim, "OPTConfig.word_embed_proj_dim")


@dataclasses.dataclass(frozen=True, kw_only=True)
class BERTConfig(AttentionOptions):
  """BERT encoder, post-LayerNorm, GELU (erf) FFN, MLM head tied to the word embeddings."""
  vocab_size: int = 512
  max_len: int = 128
  type_vocab_size: int = 2
  d_model: int = 64
  num_layers: int = 2
  num_heads: int = 4
  d_ff: int = 256
  layer_norm_eps: float = 1e-12
  dropout_rate: float = 0.0
  attention_dropout_rate: float = 0.0
  init_std: float = 0.02
  pad_token_id: int = 0

  SIZE_FIELDS: ClassVar[tuple[str, ...]] = AttentionOptions.SIZE_FIELDS + (
      "vocab_size", "max_len", "type_vocab_size")
  PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
      "tiny": {},
      "bert-base": dict(vocab_size=30522, max_len=512, d_model=768, num_layers=12, num_heads=12,
                        d_ff=3072, dropout_rate=0.1, attention_dropout_rate=0.1),
  }


@dataclasses.dataclass(frozen=True, kw_only=True)
class ViTConfig(AttentionOptions):
  """ViT classifier (as HF ViTForImageClassification): conv patches, CLS token, pre-LayerNorm."""
  image_size: int = 32
  patch_size: int = 8
  num_channels: int = 3
  num_classes: int = 10
  d_model: int = 64
  num_layers: int = 2
  num_heads: int = 4
  d_ff: int = 256
  qkv_bias: bool = True
  layer_norm_eps: float = 1e-12
  dropout_rate: float = 0.0
  attention_dropout_rate: float = 0.0
  init_std: float = 0.02

  SIZE_FIELDS: ClassVar[tuple[str, ...]] = AttentionOptions.SIZE_FIELDS + (
      "image_size", "patch_size", "num_channels", "num_classes")
  PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
      "tiny": {},
      "vit-s16": dict(image_size=224, patch_size=16, num_classes=1000, d_model=384, num_layers=12,
                      num_heads=6, d_ff=1536, layer_norm_eps=1e-6),
      "vit-b16": dict(image_size=224, patch_size=16, num_classes=1000, d_model=768, num_layers=12,
                      num_heads=12, d_ff=3072),
  }

  def __post_init__(self):
    super().__post_init__()
    if self.image_size % self.patch_size:
      raise ValueError(f"image_size ({self.image_size}) must be a multiple of patch_size "
                       f"({self.patch_size})")

  @property
  def num_patches(self) -> int:
    return (self.image_size // self.patch_size) ** 2
