"""Outlier metrics and W8A8 fake quantization (DESIGN §4-5)."""
from outeffhop_jax.analysis.metrics import (aggregate, as_rows, beyond_sigma_fraction, inf_norm, kurtosis,
                                            sink_rate, top_dims)
from outeffhop_jax.analysis.quant import (batch_range, fake_quant, quant_params, quantize_weight,
                                          update_range, weight_range)

__all__ = ["aggregate", "as_rows", "batch_range", "beyond_sigma_fraction", "fake_quant", "inf_norm",
           "kurtosis", "quant_params", "quantize_weight", "sink_rate", "top_dims", "update_range",
           "weight_range"]
