"""Weight outliers of a model's parameters (NumPy float64, on the host; the model is only read).

weight      per matrix W (kernels of nnx.Linear / nnx.Conv / HeadsIn / HeadsOut, reshaped to
            [fan_in, fan_out]): max|W| / median|W|; Pearson kurtosis of the entries; outlier
            channels = input rows / output columns whose max |w| > k_w * the median over channels
            of that max (k_w = 5). Embedding tables, biases and gates are skipped. LayerNorm /
            RMSNorm scales gamma separately: max|gamma| / median|gamma| and the dims over k_w *
            median (the paper ties LN weights to the massive dims).
"""
from __future__ import annotations

import math

import numpy as np
from flax import nnx

from outeffhop_jax.analysis.outliers import collect
from outeffhop_jax.nn.projections import HeadsIn, HeadsOut

WEIGHT_CHANNEL_K = 5.0   # outlier channel: max |w| > 5 x the median channel max


def weight_kurtosis(w) -> float:
  """Pearson kurtosis of all entries of w: E[(w - mean)^4] / s^4, s the unbiased std (as
  `metrics.kurtosis`) but without its +1e-6, which for weights of std ~0.02 (s^4 ~ 2e-7) would
  dominate the denominator. NaN for a constant w."""
  a = np.asarray(w, np.float64).reshape(-1)
  c = a - a.mean()
  s2 = np.sum(c * c) / max(a.size - 1, 1)
  return float(np.mean(c**4) / s2**2) if s2 > 0 else float("nan")


def max_median_ratio(a) -> float:
  """max |a| / median |a| (float64); NaN when the median is 0."""
  a = np.abs(np.asarray(a, np.float64)).reshape(-1)
  med = float(np.median(a))
  return float(a.max() / med) if med > 0 else float("nan")


def outlier_channels(w2d, axis: int, k: float = WEIGHT_CHANNEL_K) -> list[int]:
  """Channels of a [fan_in, fan_out] matrix whose max |w| exceeds k * the median channel max.

  axis=0: input channels (rows); axis=1: output channels (columns).
  """
  a = np.abs(np.asarray(w2d, np.float64))
  ch_max = a.max(axis=1 - axis)
  return [int(i) for i in np.nonzero(ch_max > k * np.median(ch_max))[0]]


def weight_stats(w2d, *, k: float = WEIGHT_CHANNEL_K) -> dict:
  """One matrix [fan_in, fan_out]: max_ratio, kurtosis, max_abs, in/out outlier channels."""
  w2d = np.asarray(w2d, np.float64)
  if w2d.ndim != 2:
    raise ValueError(f"w2d must be [fan_in, fan_out], got shape {w2d.shape}")
  return {"shape": list(w2d.shape), "max_abs": float(np.abs(w2d).max()),
          "max_ratio": max_median_ratio(w2d), "kurtosis": weight_kurtosis(w2d),
          "in_channels": outlier_channels(w2d, 0, k), "out_channels": outlier_channels(w2d, 1, k)}


def gamma_stats(gamma, *, k: float = WEIGHT_CHANNEL_K) -> dict:
  """A LayerNorm / RMSNorm scale gamma [D]: max|gamma| / median|gamma|, argmax and the dims with
  |gamma| > k * median |gamma|."""
  a = np.abs(np.asarray(gamma, np.float64)).reshape(-1)
  return {"max_ratio": max_median_ratio(a), "max_abs": float(a.max()), "argmax": int(a.argmax()),
          "dims": [int(i) for i in np.nonzero(a > k * np.median(a))[0]]}


def _axis_names(param) -> tuple | None:
  meta = param.get_metadata() if hasattr(param, "get_metadata") else {}
  for key in ("out_sharding", "sharding_names", "sharding"):
    names = meta.get(key)
    if names is not None:
      return tuple(names)
  return None


def _matrix(module):
  """(kernel param, number of leading fan-in axes) of a projection module, else None."""
  if isinstance(module, (nnx.Linear, HeadsIn)):
    return module.kernel, 1
  if isinstance(module, HeadsOut):
    return module.kernel, 2
  if isinstance(module, nnx.Conv):
    return module.kernel, module.kernel[...].ndim - 1
  return None


def weight_outliers(model: nnx.Module, *, k: float = WEIGHT_CHANNEL_K) -> dict:
  """Weight outliers of every projection and normalization scale of `model`.

  Returns {"matrices": {dotted path: weight_stats + "hidden_dims"}, "layer_norms": {dotted path:
  gamma_stats}}. "hidden_dims" are the outlier channels on a kernel axis named "embed" (the
  residual stream, by the parameters' logical axis names): the dims the paper ties to
  activation outliers (e.g. the output columns of fc2 / out_proj, the input rows of fc1 / Q, K, V).
  """
  mats, norms = {}, {}
  for path, module in nnx.iter_modules(model):
    name = ".".join(map(str, path))
    found = _matrix(module)
    if found is not None:
      param, n_in = found
      w = np.asarray(param[...], np.float64)
      s = weight_stats(w.reshape(math.prod(w.shape[:n_in]), -1), k=k)
      names = _axis_names(param)
      hidden = []
      if names is not None and len(names) == w.ndim:
        # A fan side is the residual stream only when it is the single axis named "embed".
        if n_in == 1 and names[0] == "embed":
          hidden += s["in_channels"]
        if w.ndim - n_in == 1 and names[-1] == "embed":
          hidden += s["out_channels"]
      s["hidden_dims"] = sorted(set(hidden))
      s["layer"] = collect.layer_of(name + ".")
      mats[name] = s
    elif (isinstance(module, (nnx.LayerNorm, nnx.RMSNorm))
          and getattr(module, "scale", None) is not None):
      norms[name] = {**gamma_stats(module.scale[...], k=k), "layer": collect.layer_of(name + ".")}
  return {"matrices": mats, "layer_norms": norms}
