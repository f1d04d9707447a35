"""Outlier analysis: two libraries (outlier metrics; fake quantization) and the experiments on them.

    from outeffhop_jax import analysis
    r = analysis.collect.collect(model, "opt", [(ids_BT, row_weights_B), ...])  # metrics
    k = analysis.outlier_kinds.collect_kinds(model, "opt", batches)  # activation/weight/attention
    q = analysis.quantize_model(model, "opt", analysis.SETTINGS["W8A8"])       # module surgery
    analysis.calibrate(q, calibration_inputs)                                  # then frozen
    python -m outeffhop_jax.analysis study --preset opt_tiny --out /tmp/study  # the full study

Layout (docs/DESIGN.md): `outliers/` and `quant/` are libraries (they never import `experiments/`,
configs/ or train.py); `experiments/{study,inspect,repair}` are imported on use by the CLI.
"""
from outeffhop_jax.analysis.outliers import collect
from outeffhop_jax.analysis.outliers import kinds as outlier_kinds
from outeffhop_jax.analysis.outliers.metrics import (aggregate, as_rows, beyond_sigma_fraction, inf_norm,
                                                     kurtosis, sink_rate, top_dims)
from outeffhop_jax.analysis.quant import w8a8
from outeffhop_jax.analysis.quant.quantizers import (batch_range, fake_quant, quant_params,
                                                     quantize_weight, update_range, weight_range)
from outeffhop_jax.analysis.quant.w8a8 import (SETTINGS, ActQuantizer, QuantAttention, QuantConfig,
                                               QuantOut, calibrate, quantize_model, set_mode)

__all__ = ["SETTINGS", "ActQuantizer", "QuantAttention", "QuantConfig", "QuantOut", "aggregate",
           "as_rows", "batch_range", "beyond_sigma_fraction", "calibrate", "collect", "fake_quant",
           "inf_norm", "kurtosis", "outlier_kinds", "quant_params", "quantize_model",
           "quantize_weight", "set_mode", "sink_rate", "top_dims", "update_range", "w8a8",
           "weight_range"]
