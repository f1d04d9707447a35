"""W8A8 post-training fake quantization by NNX module surgery (docs/w8a8.md); no model file changes.

`quantize_model(model, family, QuantConfig(...))` returns a copy of the model in which
  nnx.Linear / nnx.Conv / HeadsIn / HeadsOut   kernel fake-quantized once (symmetric, per tensor),
                                               output quantized; FFN second linears also their input
                                               (= the activation function's output)
  nnx.LayerNorm                                input quantized (= the residual sum, or the embedding
                                               sum before the first LayerNorm) and output quantized
  MultiHeadAttention -> QuantAttention         Q/K/V and output projections as above, plus the
                                               scores, the probabilities and the P.V context (after
                                               the gate, i.e. the out projection's input)
The head (LM head = the tied embedding, BERT's MLM transform + LayerNorm, ViT's classifier), the
gates, embedding tables and biases stay in float. Activations: asymmetric per tensor, range by
running min-max (momentum 0.9) or a percentile, calibrated then frozen:

    set_mode(q, "calibrate"); run batches (float pass-through, ranges updated)
    set_mode(q, "quantize");  evaluate      (frozen ranges)

In pre-LayerNorm blocks (OPT, ViT) the skip path carries the float residual sum while the
LayerNorm reads its quantized copy; in post-LayerNorm BERT the quantized sum is all there is.
"""
from __future__ import annotations

import dataclasses

import jax.numpy as jnp
from flax import nnx

from outeffhop_jax.analysis.quant import passes
from outeffhop_jax.analysis.quant.quantizers import fake_quant, quantize_weight, update_range
from outeffhop_jax.nn import MultiHeadAttention
from outeffhop_jax.nn.attention import AttentionHooks
from outeffhop_jax.nn.gates import AttentionGate, OutputGate
from outeffhop_jax.nn.projections import HeadsIn, HeadsOut

# Top-level children kept in float per family (the papers keep the task head unquantized).
HEAD_MODULES = {"opt": (), "bert": ("mlm_transform", "mlm_layer_norm"), "vit": ("classifier",),
                "stanhop": ()}
# Linears whose input is an activation function's output (relu / gelu), which no other module
# quantizes; every other linear reads an already quantized tensor (a LayerNorm or context output).
ACTIVATION_INPUT_LINEARS = {"opt": ("fc2",), "bert": ("output",), "vit": ("output",),
                            "stanhop": ("fc2",)}
MODES = ("off", "calibrate", "quantize")


@dataclasses.dataclass(frozen=True)
class QuantConfig:
  """weight_bits / act_bits: None keeps that side in float. weight_method: "minmax" | "mse".
  percentile: None (running min-max) or e.g. 99.999 (per-batch percentiles, then the running mean)."""
  weight_bits: int | None = 8
  act_bits: int | None = 8
  weight_method: str = "minmax"
  percentile: float | None = None
  momentum: float = 0.9

  @property
  def label(self) -> str:
    w = "W32" if self.weight_bits is None else f"W{self.weight_bits}"
    a = "A32" if self.act_bits is None else f"A{self.act_bits}"
    return w + a


SETTINGS = {
    "W8A8": QuantConfig(8, 8),
    "W6A8": QuantConfig(6, 8),
    "W4A8": QuantConfig(4, 8, weight_method="mse"),
    "W6A6": QuantConfig(6, 6),
}


class QuantRange(nnx.Variable):
  """Calibrated state of an activation quantizer (running min / max, calibrated flag)."""


class ActQuantizer(nnx.Module):
  """Asymmetric per-tensor fake quantizer x -> x_hat on [x_min, x_max] (see `quantizers.fake_quant`).

  mode "off": identity. "calibrate": identity, the range follows `quantizers.update_range`.
  "quantize": fake-quantize with the frozen range. An uncalibrated quantizer (calibrated False)
  has the range [0, 0] and maps everything to 0, so forgetting calibration cannot go unnoticed.
  bits None: always the identity (that side stays in float).
  """

  def __init__(self, bits: int | None, *, momentum: float = 0.9, percentile: float | None = None):
    self.bits, self.momentum, self.percentile = bits, momentum, percentile
    self.mode = "off"
    self.x_min = QuantRange(jnp.zeros((), jnp.float32))
    self.x_max = QuantRange(jnp.zeros((), jnp.float32))
    self.calibrated = QuantRange(jnp.zeros((), bool))

  def __call__(self, x, where=None):
    if self.bits is None or self.mode == "off":
      return x
    if self.mode == "calibrate":
      lo, hi, flag = update_range((self.x_min[...], self.x_max[...], self.calibrated[...]), x,
                                  momentum=self.momentum, percentile=self.percentile, where=where)
      self.x_min[...], self.x_max[...], self.calibrated[...] = lo, hi, flag
      return x
    return fake_quant(x, num_bits=self.bits, symmetric=False, x_min=self.x_min[...],
                      x_max=self.x_max[...])


class QuantOut(nnx.Module):
  """y = q_out(inner(q_in(x))): a Linear / Conv / LayerNorm / head projection with activation
  quantizers (the inner module's kernel is fake-quantized at surgery time)."""

  def __init__(self, inner: nnx.Module, q_out: ActQuantizer, q_in: ActQuantizer | None = None):
    self.inner, self.q_out, self.q_in = inner, q_out, q_in

  def __call__(self, x, *args, **kwargs):
    if self.q_in is not None:
      x = self.q_in(x)
    return self.q_out(self.inner(x, *args, **kwargs))


class QuantAttention(nnx.Module):
  """A `MultiHeadAttention` with activation quantizers on its scores, probabilities and context.

  Wraps the float layer and runs its own forward with `nn.AttentionHooks` (the "reference" path:
  float32 scores and probabilities); the gate stays in float. Dropout is never applied
  (post-training evaluation only). The quantizers are children of this module (paths
  `<layer>.scores_q`, `.probs_q`, `.context_q`), so `ranges` and `act_groups` see them.
  """

  def __init__(self, inner: MultiHeadAttention, make_q):
    self.inner = inner
    self.scores_q, self.probs_q, self.context_q = make_q(), make_q(), make_q()
    # Captured maps are sown here (".attn_probs", ".context" of this module), as the float layer's.
    self.capture_intermediates = inner.capture_intermediates
    self.capture_attention_probs = inner.capture_attention_probs

  def _probs(self, p_BNTS, where=None):
    p_BNTS = self.probs_q(p_BNTS, where=where)
    if self.capture_attention_probs:
      self.sow(nnx.Intermediate, "attn_probs", p_BNTS)
    return p_BNTS

  def _context(self, ctx_BTNH):
    ctx_BTNH = self.context_q(ctx_BTNH)
    if self.capture_intermediates:
      self.sow(nnx.Intermediate, "context", ctx_BTNH)
    return ctx_BTNH

  def __call__(self, *args, **kwargs):
    """The inner layer's call (same arguments) with the quantizers hooked in; deterministic."""
    a = self.inner
    saved = a.capture_intermediates, a.capture_attention_probs
    a.capture_intermediates = a.capture_attention_probs = False  # sown by the hooks above instead
    try:
      return a(*args, **{**kwargs, "deterministic": True},
               hooks=AttentionHooks(scores=self.scores_q, probs=self._probs, context=self._context))
    finally:
      a.capture_intermediates, a.capture_attention_probs = saved


def _quantize_kernel(module, cfg: QuantConfig):
  if cfg.weight_bits is not None:
    module.kernel[...] = quantize_weight(module.kernel[...], num_bits=cfg.weight_bits,
                                         method=cfg.weight_method).astype(module.kernel.dtype)


def _set_child(parent, key, child):
  if isinstance(key, int):
    parent[key] = child
  else:
    setattr(parent, key, child)


def quantize_model(model: nnx.Module, family: str, cfg: QuantConfig = QuantConfig(), *,
                   copy: bool = True) -> nnx.Module:
  """The surgically fake-quantized model (a clone unless copy=False); quantizers start "off"."""
  if family not in HEAD_MODULES:
    raise ValueError(f"family must be one of {sorted(HEAD_MODULES)}, got {family!r}")
  q = nnx.clone(model) if copy else model
  make_q = lambda: ActQuantizer(cfg.act_bits, momentum=cfg.momentum,  # noqa: E731
                                percentile=cfg.percentile)
  act_in = ACTIVATION_INPUT_LINEARS[family]

  def dense(module, key):
    _quantize_kernel(module, cfg)
    return QuantOut(module, make_q(), make_q() if key in act_in else None)

  def rewrite(parent, top):
    for key, child in list(nnx.iter_children(parent)):
      if top and key in HEAD_MODULES[family]:
        continue
      if isinstance(child, MultiHeadAttention):
        for name in ("query", "key", "value", "out"):
          setattr(child, name, dense(getattr(child, name), name))
        new = QuantAttention(child, make_q)
      elif isinstance(child, (nnx.Linear, nnx.Conv, HeadsIn, HeadsOut)):
        new = dense(child, key)
      elif isinstance(child, nnx.LayerNorm):
        new = QuantOut(child, make_q(), make_q())
      elif isinstance(child, (AttentionGate, OutputGate, ActQuantizer, QuantOut, QuantAttention)):
        continue
      elif isinstance(child, nnx.Module) or isinstance(child, nnx.List):
        rewrite(child, False)
        continue
      else:
        continue
      _set_child(parent, key, new)

  rewrite(q, True)
  return q


def quantizers(model: nnx.Module) -> list[tuple[tuple, ActQuantizer]]:
  """(path, quantizer) of every activation quantizer in the model."""
  return [(p, m) for p, m in nnx.iter_modules(model) if isinstance(m, ActQuantizer)]


def set_mode(model: nnx.Module, mode: str) -> nnx.Module:
  if mode not in MODES:
    raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
  for _, m in quantizers(model):
    m.mode = mode
  return model


def ranges(model: nnx.Module) -> dict[str, tuple[float, float, bool]]:
  """{dotted path: (x_min, x_max, calibrated)} of every activation quantizer."""
  return {".".join(map(str, p)): (float(m.x_min[...]), float(m.x_max[...]), bool(m.calibrated[...]))
          for p, m in quantizers(model)}


def calibrate(qmodel: nnx.Module, batches_inputs) -> nnx.Module:
  """Runs the calibration inputs through `qmodel` in "calibrate" mode (jitted), then freezes the
  ranges (mode "quantize"). Returns qmodel."""
  set_mode(qmodel, "calibrate")
  if passes.collect_stats(qmodel, QuantRange, batches_inputs) == 0:
    raise ValueError("calibrate: no calibration batches")
  return set_mode(qmodel, "quantize")
