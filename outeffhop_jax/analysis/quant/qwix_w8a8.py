"""A second, labelled protocol: "modern W8A8 on matmul inputs" through qwix (optional dependency).

qwix intercepts the matmuls (dot_general / einsum) inside the model and fake-quantizes their
operands: weights int8 symmetric per output channel (absmax), activations int8 symmetric per tensor
with a static scale = the mean over the calibration batches of each batch's absmax (qwix's
default would be per token). Covered: Q/K/V/out projections and the FFN linears (their inputs =
LayerNorm outputs, contexts, activation outputs). Not covered: the attention matmuls q.k and p.v,
residual sums and other non-matmul tensors that the papers' W8A8 quantizes (`w8a8.py`). The head
(tied LM embedding, MLM head, classifier) and the gates stay in float. Cost: qwix traces the model
once to intercept it (~20 s for the tiny models here); recalibration then reuses the copy.

    qm = QwixW8A8(model, family, sample_inputs)
    qm.calibrate(batches_inputs)          # fresh statistics, then frozen
    runs.evaluate_model(qm.model, task, eval_batches)
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from outeffhop_jax.analysis.quant import passes
from outeffhop_jax.analysis.quant.w8a8 import HEAD_MODULES

# Module paths kept in float: the family's head and every gate (qwix matches module paths).
_HEADS = {"opt": ("embed_tokens",), "bert": HEAD_MODULES["bert"] + ("bert.word_embeddings",),
          "vit": HEAD_MODULES["vit"]}


PROTOCOL = ("qwix QtProvider: weights int8 per output channel (absmax); linear-layer inputs int8 "
            "per tensor, static scale = mean calibration absmax; attention matmuls, residuals, "
            "LayerNorms, head and gates in float")


def available() -> bool:
  try:
    import qwix  # noqa: F401
  except ImportError:
    return False
  return True


def _rules(family: str, bits: int):
  import qwix

  skip = "|".join(h.replace(".", "/") for h in _HEADS[family])  # qwix joins paths with "/"
  qtype = {8: "int8", 4: "int4"}[bits]
  kw = dict(weight_qtype=qtype, act_qtype=qtype, act_static_scale=True,
            act_calibration_method="absmax", act_batch_axes=())
  # qwix scales activations per row (token) by default; per tensor needs the lhs channel axes off
  # (the rhs is the weight, whose per-output-channel scale is kept). Attention's own einsums
  # (q.k, p.v: two activations) stay in float: qwix keeps a per-token static scale for an
  # activation rhs whatever the flags, which would tie the scales to the calibration batch shape.
  lhs = {"lhs_disable_channelwise_axes": True}
  return [qwix.QtRule(module_path=r"^(.*/)?(self_attn|attention)$"),  # first match wins: float
          qwix.QtRule(module_path=rf"^(?!({skip})$)(?!.*gate).*$", additional_qt_config=lhs, **kw)]


class QwixW8A8:
  """A qwix-quantized copy of `model` whose static activation scales are (re)calibrated."""

  def __init__(self, model: nnx.Module, family: str, sample_inputs, *, bits: int = 8):
    import qwix

    self.model = qwix.quantize_model(nnx.clone(model), qwix.QtProvider(_rules(family, bits)),
                                     jnp.asarray(sample_inputs))
    self._fresh = jax.tree.map(jnp.zeros_like, nnx.state(self.model, qwix.QuantStat))

  def calibrate(self, batches_inputs) -> nnx.Module:
    """Resets the statistics, averages them over `batches_inputs` (jitted), then freezes them."""
    import qwix

    nnx.update(self.model, self._fresh)
    self.model.set_attributes(disable_quant_stats_update=False)
    passes.collect_stats(self.model, qwix.QuantStat, batches_inputs)
    self.model.set_attributes(disable_quant_stats_update=True)
    return self.model
