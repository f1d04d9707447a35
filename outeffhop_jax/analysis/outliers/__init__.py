"""Outlier metrics (pure), their collection from a model, and the three outlier kinds.

  metrics     kurtosis, inf-norm, >6 sigma fraction, sink rate, top dims, aggregation (pure NumPy/JAX)
  collect     runs a model with capture switched on; per-module metrics of the outlier module set
  kinds       activation / weight / attention outliers of one model (`collect_kinds`)
  encoder     the same metrics on a pretrained sentence encoder, over real tokens only
"""
