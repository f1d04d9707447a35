"""STanHop-Net (Wu, Hu et al., ICLR 2024): multivariate forecasting with tandem sparse Hopfield layers.

A Crossformer-style encoder-decoder whose attention is generalized sparse Hopfield (`nn.GSH`).
Shapes: B batch, L = in_len, C series, P = seg_len, S = L / P segments, D = d_model, O = out_len.

    embed:   x_BLC -> segments x_BCSP -> Linear(P -> D) + pos_CSD -> LN         (dimension-segment-wise)
             [+ Tune-and-Play: z += GSHLayer(z), learned memory patterns]
    block:   temporal, per series:  z = LN(z + GSH(z, z));  z = LN(z + MLP(z))  over S segments
             cross-series, per segment:  r = GSHPooling_routers(z)   (R router queries pool the C series)
                                         z = LN(z + GSH(z, r));  z = LN(z + MLP(z))
    encoder: scale 0 = block; scale i > 0 = merge 2 neighbouring segments (LN, Linear(2D -> D)),
             then block: S, S/2, S/4, ... (multi-resolution; each GSH learns its own alpha)
    decoder: one layer per encoder output e_i (num_layers + 1): dec = block(dec);
             dec = LN(dec + GSH(dec, e_i)); dec = LN(dec + MLP(dec)); pred_i = Linear(D -> P)(dec)
             y = sum_i pred_i, cut to O steps -> y_BOC.
Plug-and-Play memory (train-less): `__call__(x, memory_KLC=bank)` replaces the input by
(1 - w) x + w r, r the per-series Hopfield retrieval of x from the bank (no parameter involved).

Intermediates (sown only under `nn.capture`), per block "time_out", "time_norm", "time_fc2",
"time_mlp_norm", "series_out", "series_norm", "series_fc2", "series_mlp_norm", "block_output",
and per decoder layer "cross_out", "cross_norm", "cross_fc2", "cross_mlp_norm"; each is
reshaped to [B, rows, D]; GSH layers sow "context" (and "attn_probs" if asked).
`OUTLIER_MODULES` lists the outlier-metric set by leaf name (as OPT's: Hopfield outputs, FFN outputs,
LayerNorm outputs, block outputs).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from flax import nnx

from outeffhop_jax import ops
from outeffhop_jax.models import _layers
from outeffhop_jax.models.configs import AttentionOptions
from outeffhop_jax.nn import _init
from outeffhop_jax.nn.attention import parse_sinks
from outeffhop_jax.nn.gsh import GSH, GSHLayer, GSHPooling, check_learnable
from outeffhop_jax.ops import _checks

OUTLIER_MODULES = ("time_out", "time_fc2", "time_mlp_norm", "series_out", "series_fc2",
                   "series_mlp_norm", "cross_out", "cross_fc2", "cross_mlp_norm", "block_output")


@dataclasses.dataclass(frozen=True, kw_only=True)
class STanHopConfig(AttentionOptions):
  """STanHop-Net. Attention options as every model (normalizer, gate); the STanHop fields:

  in_len, out_len, seg_len: input / forecast length and segment length (in_len % seg_len == 0).
  n_series: number of series C the model reads. num_layers: encoder scales (decoder has one more).
  num_routers: router patterns R of the cross-series pooling. merge_win: segments merged per scale.
  normalizer + learn_alpha: "entmax:A" with learn_alpha=True is the paper's GSH (alpha starts at A).
  update_steps_max: Hopfield retrieval steps before the association (0 = one step).
  tune_memories: Tune-and-Play learned memory patterns (0 = off).
  plug_weight, memory_beta, memory_normalizer: Plug-and-Play blend weight w, inverse temperature
  (default 1 / sqrt(in_len)) and normalizer of the retrieval from a window bank.
  """
  in_len: int = 48
  out_len: int = 12
  seg_len: int = 6
  n_series: int = 3
  d_model: int = 32
  num_heads: int = 2
  num_layers: int = 2
  d_ff: int = 64
  num_routers: int = 4
  merge_win: int = 2
  normalizer: str = "entmax:1.5"
  learn_alpha: bool = True
  update_steps_max: int = 0
  tune_memories: int = 0
  plug_weight: float = 0.5
  memory_beta: float | None = None
  memory_normalizer: str = "sparsemax"
  layer_norm_eps: float = 1e-5
  dropout_rate: float = 0.0
  attention_dropout_rate: float = 0.0
  init_std: float = 0.02

  PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
      "tiny": {},
      # The paper's ETTh1 setting (Crossformer hyper-parameters): 168 -> 24, segments of 6.
      "stanhop-etth1": dict(in_len=168, out_len=24, seg_len=6, n_series=7, d_model=256, num_heads=4,
                            num_layers=3, d_ff=512, num_routers=10, dropout_rate=0.2),
  }

  SIZE_FIELDS: ClassVar[tuple[str, ...]] = AttentionOptions.SIZE_FIELDS + (
      "in_len", "out_len", "seg_len", "n_series", "num_routers", "merge_win")

  def __post_init__(self):
    super().__post_init__()  # checks SIZE_FIELDS first
    if self.in_len % self.seg_len:
      raise ValueError(f"in_len ({self.in_len}) must be a multiple of seg_len ({self.seg_len})")
    check_learnable(self.normalizer, self.learn_alpha)
    ops.get_normalizer(self.memory_normalizer)
    if parse_sinks(self.sinks) is not None:
      raise ValueError("sinks are not supported by the Hopfield layers of STanHop-Net; use "
                       "normalizer='softmax1' (a sink logit at 0)")
    for name in ("tune_memories", "update_steps_max"):
      _checks.check_size(getattr(self, name), f"STanHopConfig.{name}", allow_zero=True)
    if self.memory_beta is not None and not 0 < self.memory_beta < math.inf:
      raise ValueError(f"STanHopConfig.memory_beta must be None (1 / sqrt(in_len)) or finite and "
                       f"> 0, got {self.memory_beta}")
    if not 0.0 <= self.plug_weight <= 1.0:
      raise ValueError(f"plug_weight must be in [0, 1], got {self.plug_weight}")

  @property
  def in_segments(self) -> int:
    return self.in_len // self.seg_len

  @property
  def out_segments(self) -> int:
    return math.ceil(self.out_len / self.seg_len)

  def segments_per_scale(self) -> list[int]:
    """Segments of the embedding and of each encoder scale: S, ceil(S / w), ..."""
    counts = [self.in_segments, self.in_segments]
    for _ in range(1, self.num_layers):
      counts.append(math.ceil(counts[-1] / self.merge_win))
    return counts


def _gsh(cfg: STanHopConfig, rngs, cls=GSH, **kwargs):
  # The blocks put LayerNorms around each GSH (post-norm, as Crossformer), so the Hopfield layers'
  # own pattern LayerNorms are off.
  return cls(cfg.d_model, num_heads=cfg.num_heads, normalizer=cfg.normalizer,
             learn_alpha=cfg.learn_alpha, gate=cfg.gate, gate_init=cfg.gate_init,
             update_steps_max=cfg.update_steps_max, dropout_rate=cfg.attention_dropout_rate,
             implementation=cfg.attention_impl, dtype=cfg.dtype,
             param_dtype=_init.as_dtype(cfg.param_dtype), normalize_state=False,
             normalize_stored=False, normalize_projection=False, rngs=rngs, **kwargs)


def _set_capture(module, cfg):
  module.capture_intermediates = cfg.capture_intermediates
  module.capture_attention_probs = cfg.capture_attention_probs
  return module


class _Residual(_layers.Sowing):
  """x = LN(x + GSH(x, stored)); x = LN(x + fc2(gelu(fc1(x)))), recording under `prefix`_*."""

  def __init__(self, cfg: STanHopConfig, prefix: str, *, rngs: nnx.Rngs):
    self.prefix = prefix
    self.hopfield = _set_capture(_gsh(cfg, rngs), cfg)
    self.norm = _layers.layer_norm(cfg.d_model, cfg, rngs)
    self.fc1 = _layers.dense(cfg.d_model, cfg.d_ff, ("embed", "mlp"), cfg, rngs)
    self.fc2 = _layers.dense(cfg.d_ff, cfg.d_model, ("mlp", "embed"), cfg, rngs)
    self.mlp_norm = _layers.layer_norm(cfg.d_model, cfg, rngs)
    self.dropout = _layers.dropout(cfg.dropout_rate, rngs)
    self.init_capture(cfg)

  def __call__(self, x_RTD, stored_RSD, B, deterministic):
    def rec(name, v_RTD):  # metric rows per example: [B, rows, D]
      self.record(f"{self.prefix}_{name}", v_RTD.reshape(B, -1, v_RTD.shape[-1]))
      return v_RTD

    h = rec("out", self.hopfield(state=x_RTD, stored=stored_RSD, deterministic=deterministic))
    x_RTD = rec("norm", self.norm(x_RTD + self.dropout(h, deterministic=deterministic)))
    h = rec("fc2", self.fc2(jax.nn.gelu(self.fc1(x_RTD), approximate=False)))
    return rec("mlp_norm", self.mlp_norm(x_RTD + self.dropout(h, deterministic=deterministic)))


class STanHopBlock(_layers.Sowing):
  """Tandem GSH: temporal (across the segments of each series), then cross-series via routers.

  z_BCSD -> z_BCSD. The cross-series stage pools the C series of each segment into R router
  patterns (GSHPooling, learned queries) and retrieves each series back from them (GSH): O(C R)
  instead of O(C^2) associations.
  """

  def __init__(self, cfg: STanHopConfig, *, rngs: nnx.Rngs):
    self.time = _Residual(cfg, "time", rngs=rngs)
    self.routers = _gsh(cfg, rngs, cls=GSHPooling, quantity=cfg.num_routers)
    _set_capture(self.routers.hopfield, cfg)
    self.series = _Residual(cfg, "series", rngs=rngs)
    self.init_capture(cfg)

  def __call__(self, z_BCSD, deterministic: bool = True):
    B, C, S, D = z_BCSD.shape
    x = z_BCSD.reshape(B * C, S, D)
    x = self.time(x, x, B, deterministic)
    y = x.reshape(B, C, S, D).transpose(0, 2, 1, 3).reshape(B * S, C, D)
    routed_BsRD = self.routers(y, deterministic=deterministic)
    y = self.series(y, routed_BsRD, B, deterministic)
    z_BCSD = y.reshape(B, S, C, D).transpose(0, 2, 1, 3)
    return self.record("block_output", z_BCSD)


class SegmentMerge(nnx.Module):
  """[B, C, S, D] -> [B, C, ceil(S / w), D]: w neighbours concatenated, LN(w D), Linear(w D -> D).

  When w does not divide S the last segments are repeated to fill the final group (Crossformer).
  """

  def __init__(self, cfg: STanHopConfig, *, rngs: nnx.Rngs):
    self.win = cfg.merge_win
    self.norm = _layers.layer_norm(cfg.merge_win * cfg.d_model, cfg, rngs)
    self.proj = _layers.dense(cfg.merge_win * cfg.d_model, cfg.d_model, ("mlp", "embed"), cfg, rngs)

  def __call__(self, z_BCSD):
    B, C, S, D = z_BCSD.shape
    pad = (-S) % self.win
    if pad:
      z_BCSD = jnp.concatenate([z_BCSD, z_BCSD[:, :, S - pad:]], axis=2)
    z = z_BCSD.reshape(B, C, -1, self.win * D)  # neighbours side by side along the features
    return self.proj(self.norm(z))


class EncoderScale(nnx.Module):
  def __init__(self, cfg: STanHopConfig, merge: bool, *, rngs: nnx.Rngs):
    self.merge = SegmentMerge(cfg, rngs=rngs) if merge else None
    self.block = STanHopBlock(cfg, rngs=rngs)

  def __call__(self, z_BCSD, deterministic):
    if self.merge is not None:
      z_BCSD = self.merge(z_BCSD)
    return self.block(z_BCSD, deterministic)


class DecoderLayer(nnx.Module):
  """Self block on the forecast segments, GSH into one encoder scale, MLP, Linear(D -> seg_len)."""

  def __init__(self, cfg: STanHopConfig, *, rngs: nnx.Rngs):
    self.block = STanHopBlock(cfg, rngs=rngs)
    self.cross = _Residual(cfg, "cross", rngs=rngs)
    self.predict = _layers.dense(cfg.d_model, cfg.seg_len, ("embed", None), cfg, rngs)

  def __call__(self, d_BCQD, enc_BCSD, deterministic):
    B, C, Q, D = d_BCQD.shape
    d_BCQD = self.block(d_BCQD, deterministic)
    x = self.cross(d_BCQD.reshape(B * C, Q, D), enc_BCSD.reshape(B * C, -1, D), B, deterministic)
    d_BCQD = x.reshape(B, C, Q, D)
    return d_BCQD, self.predict(d_BCQD)  # [B, C, Q, seg_len]


def plug_and_play(x_BLC, memory_KLC, *, beta, normalizer="sparsemax", weight=0.5):
  """Train-less memory: each series' window retrieves from the bank, r = Xi^T norm(beta Xi x).

  x_BLC [B, L, C], memory_KLC [K, L, C] (K stored windows of the same series, e.g. past training
  windows). Returns (1 - weight) x + weight r, [B, L, C]. One Hopfield update per (batch, series),
  vmapped over the series; nothing here is a parameter.
  """
  if memory_KLC.ndim != 3 or memory_KLC.shape[1:] != x_BLC.shape[1:] or not memory_KLC.shape[0]:
    raise ValueError(f"memory_KLC must have shape [K, {x_BLC.shape[1]}, {x_BLC.shape[2]}] with "
                     f"K >= 1 (windows of the input's length and series; an empty bank has "
                     f"nothing to retrieve), got {tuple(memory_KLC.shape)}")
  update = lambda q_BL, m_KL: ops.hopfield_update(q_BL, m_KL, beta=beta, normalizer=normalizer)
  r_BLC = jax.vmap(update, in_axes=(2, 2), out_axes=2)(x_BLC, memory_KLC.astype(x_BLC.dtype))
  return (1.0 - weight) * x_BLC + weight * r_BLC


class STanHopNet(_layers.Sowing):
  """STanHop-Net. __call__(x_BLC, *, memory_KLC=None, deterministic=True) -> y_BOC (float32)."""

  def __init__(self, config: STanHopConfig, *, rngs: nnx.Rngs):
    cfg = self.config = config
    C, D = cfg.n_series, cfg.d_model
    pos_init = _init.normal(1.0)  # as Crossformer's randn position embeddings
    self.embed = _layers.dense(cfg.seg_len, D, (None, "embed"), cfg, rngs)
    self.enc_pos = _init.param(rngs, pos_init, (C, cfg.in_segments, D), (None, None, "embed"))
    self.embed_norm = _layers.layer_norm(D, cfg, rngs)
    self.tune_memory = (_gsh(cfg, rngs, cls=GSHLayer, quantity=cfg.tune_memories)
                        if cfg.tune_memories else None)
    self.encoder = nnx.List([EncoderScale(cfg, merge=i > 0, rngs=rngs)
                             for i in range(cfg.num_layers)])
    self.dec_pos = _init.param(rngs, pos_init, (C, cfg.out_segments, D), (None, None, "embed"))
    self.decoder = nnx.List([DecoderLayer(cfg, rngs=rngs) for _ in range(cfg.num_layers + 1)])
    self.init_capture(cfg)

  def check_input(self, x_BLC):
    cfg = self.config
    shape = tuple(getattr(x_BLC, "shape", ()))
    if len(shape) != 3 or shape[1:] != (cfg.in_len, cfg.n_series):
      raise ValueError(f"x_BLC must have shape [batch, in_len={cfg.in_len}, "
                       f"n_series={cfg.n_series}], got {shape}: the model was built for "
                       f"{cfg.n_series} series of {cfg.in_len} steps")

  def encode(self, x_BLC, deterministic: bool = True) -> list[jax.Array]:
    """Embedding and every encoder scale's output, [B, C, S_i, D] each (S_i from fine to coarse)."""
    cfg = self.config
    B = x_BLC.shape[0]
    x_BCSP = x_BLC.transpose(0, 2, 1).reshape(B, cfg.n_series, cfg.in_segments, cfg.seg_len)
    z_BCSD = self.embed_norm(self.embed(x_BCSP) + self.enc_pos[...].astype(x_BLC.dtype))
    if self.tune_memory is not None:
      z = z_BCSD.reshape(-1, cfg.in_segments, cfg.d_model)
      z_BCSD = z_BCSD + self.tune_memory(z, deterministic=deterministic).reshape(z_BCSD.shape)
    outs = [z_BCSD]
    for scale in self.encoder:
      outs.append(scale(outs[-1], deterministic))
    return outs

  def __call__(self, x_BLC, *, memory_KLC=None, deterministic: bool = True):
    cfg = self.config
    self.check_input(x_BLC)
    x_BLC = jnp.asarray(x_BLC, cfg.dtype)
    if x_BLC.shape[0] == 0:  # an empty batch: an empty forecast (nothing is run or recorded)
      return jnp.zeros((0, cfg.out_len, cfg.n_series), jnp.float32)
    if memory_KLC is not None:
      beta = cfg.memory_beta or 1.0 / math.sqrt(cfg.in_len)
      x_BLC = plug_and_play(x_BLC, jnp.asarray(memory_KLC), beta=beta,
                            normalizer=cfg.memory_normalizer, weight=cfg.plug_weight)
    enc = self.encode(x_BLC, deterministic)
    B = x_BLC.shape[0]
    d_BCQD = jnp.broadcast_to(self.dec_pos[...].astype(x_BLC.dtype),
                              (B,) + self.dec_pos.shape)
    y_BCQP = 0.0
    for layer, enc_BCSD in zip(self.decoder, enc):
      d_BCQD, pred_BCQP = layer(d_BCQD, enc_BCSD, deterministic)
      y_BCQP = y_BCQP + pred_BCQP
    y_BCO = y_BCQP.reshape(B, cfg.n_series, -1)[:, :, :cfg.out_len]
    return y_BCO.transpose(0, 2, 1).astype(jnp.float32)


def alphas(model: nnx.Module) -> dict[str, jax.Array]:
  """{dotted path: alpha} of every GSH layer with a learned alpha (resolution-specific sparsity)."""
  return {".".join(map(str, path)): m.alpha for path, m in nnx.iter_modules(model)
          if isinstance(m, GSH) and m.alpha_logit is not None}
