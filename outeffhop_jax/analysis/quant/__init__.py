"""Post-training fake quantization: quantizers, W8A8 module surgery, the qwix protocol, activation
groups and embedding fidelity.

  quantizers  fake_quant / quant_params / weight and activation ranges (pure JAX)
  w8a8        `quantize_model` (module surgery), `calibrate`, `set_mode`, `SETTINGS`
  qwix_w8a8   the labelled qwix protocol (optional dependency)
  act_groups  switch activation quantizers on by group (ablations)
  fidelity    sentence-encoder evaluation: fidelity to FP32, retrieval, W8A8 of an encoder
"""
from outeffhop_jax.analysis.quant.quantizers import (batch_range, fake_quant, quant_params,
                                                     quantize_weight, update_range, weight_range)

__all__ = ["batch_range", "fake_quant", "quant_params", "quantize_weight", "update_range",
           "weight_range"]
