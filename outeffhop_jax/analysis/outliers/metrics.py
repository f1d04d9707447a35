"""Outlier metrics as the Qualcomm / OutEffHop code defines them.

Per row (a flattened module output of one sequence, or one token for per-token modules):
    kurtosis(x) = E[(x - mean)^4] / (std(x)^4 + 1e-6),  std unbiased (N - 1); Gaussian ~ 3.
    inf_norm(x) = max |x|.
Each is averaged over the evaluation rows of a module; "avg kurtosis" is the mean over modules and
"max inf norm" the max over modules (`aggregate`).
"""
from __future__ import annotations

from typing import Mapping

import jax.numpy as jnp
import numpy as np


def _rows(x):
  x = jnp.asarray(x)
  if x.ndim != 2:
    raise ValueError(f"x must have shape [rows, features], got {tuple(x.shape)}")
  return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _where(x, where):
  """Row weights for `where` (None = every entry): float32 [rows, features] and counts [rows]."""
  if where is None:
    return None, jnp.asarray(x.shape[-1], jnp.float32)
  w = jnp.broadcast_to(jnp.asarray(where, bool), x.shape).astype(x.dtype)
  # A row with no valid entry gets count 1 (finite statistics) instead of a 0/0 NaN.
  return w, jnp.maximum(jnp.sum(w, axis=-1), 1.0)


def _mean(x, w, n, keepdims=False):
  s = jnp.sum(x if w is None else x * w, axis=-1, keepdims=keepdims)
  return s / (n[..., None] if keepdims and w is not None else n)


def kurtosis(x, where=None):
  """Pearson kurtosis per row: [rows, features] -> [rows] (float32).

  where: optional boolean, broadcastable to x; only True entries count (e.g. real tokens of a
  flattened padded sequence), with N the number of valid entries of the row.
  """
  x = _rows(x)
  if where is None:
    mu = jnp.mean(x, axis=-1, keepdims=True)
    m4 = jnp.mean((x - mu) ** 4, axis=-1)
    std = jnp.std(x, axis=-1, ddof=1)
    return m4 / (std**4 + 1e-6)
  w, n = _where(x, where)
  d = x - _mean(x, w, n, keepdims=True)
  var = jnp.sum(w * d**2, axis=-1) / jnp.maximum(n - 1.0, 1.0)
  return _mean(d**4, w, n) / (var**2 + 1e-6)


def inf_norm(x, where=None):
  """Infinity norm per row: [rows, features] -> [rows] (over the True entries of `where`)."""
  a = jnp.abs(_rows(x))
  return jnp.max(a if where is None else jnp.where(where, a, 0.0), axis=-1)


def beyond_sigma_fraction(x, k: float = 6.0, where=None):
  """Fraction of entries per row farther than k standard deviations from the row mean."""
  x = _rows(x)
  if where is None:
    mu = jnp.mean(x, axis=-1, keepdims=True)
    std = jnp.std(x, axis=-1, ddof=1, keepdims=True)
    return jnp.mean(jnp.abs(x - mu) > k * std, axis=-1)
  w, n = _where(x, where)
  d = x - _mean(x, w, n, keepdims=True)
  std = jnp.sqrt(jnp.sum(w * d**2, axis=-1, keepdims=True) / jnp.maximum(n - 1.0, 1.0)[..., None])
  return _mean((jnp.abs(d) > k * std).astype(x.dtype), w, n)


def as_rows(x, per: str = "sequence"):
  """Reshapes a module output [B, T, D] (or [B, ..., D]) into metric rows.

  per="sequence": one row per batch element (the whole output flattened, as the papers' code);
  per="token": one row per token ([B * T, D]).
  """
  x = jnp.asarray(x)
  if per == "sequence":
    return x.reshape(x.shape[0], -1)
  if per == "token":
    return x.reshape(-1, x.shape[-1])
  raise ValueError(f"per must be 'sequence' or 'token', got {per!r}")


def top_dims(x, k: int = 5):
  """The k hidden dimensions carrying the largest |x| of [..., D]: (indices, max |x| per dim)."""
  a = np.abs(np.asarray(x, np.float32)).reshape(-1, np.shape(x)[-1]).max(axis=0)
  idx = np.argsort(-a)[:k]
  return idx, a[idx]


def sink_rate(probs_BNTS, threshold: float = 0.3, sink_index: int = 0, valid_T=None):
  """Fraction of heads whose mean attention to token `sink_index` exceeds `threshold` (Gu et al. 2025).

  probs_BNTS: attention probabilities of one layer. valid_T: optional boolean [B, T] of real queries.
  """
  p = jnp.asarray(probs_BNTS, jnp.float32)[..., sink_index]  # [B, N, T]
  if valid_T is None:
    mean_N = jnp.mean(p, axis=(0, 2))
  else:
    w = jnp.asarray(valid_T, jnp.float32)[:, None, :]
    mean_N = jnp.sum(p * w, axis=(0, 2)) / jnp.maximum(jnp.sum(w, axis=(0, 2)), 1.0)
  return jnp.mean(mean_N > threshold)


def aggregate(per_module: Mapping[str, Mapping[str, float]]) -> dict:
  """Per-module row-averaged metrics -> the papers' summary.

  per_module: {module name: {"kurtosis": mean over rows, "inf_norm": mean over rows}}.
  Returns avg_kurtosis (mean over modules), max_kurtosis, max_inf_norm (max over modules) and the
  modules where the maxima occur.
  """
  if not per_module:
    raise ValueError("per_module is empty: no module outputs were collected")
  names = list(per_module)
  kurt = np.array([float(per_module[n]["kurtosis"]) for n in names])
  infn = np.array([float(per_module[n]["inf_norm"]) for n in names])
  return {
      "avg_kurtosis": float(kurt.mean()),
      "max_kurtosis": float(kurt.max()),
      "max_kurtosis_module": names[int(kurt.argmax())],
      "max_inf_norm": float(infn.max()),
      "max_inf_norm_module": names[int(infn.argmax())],
      "num_modules": len(names),
  }
