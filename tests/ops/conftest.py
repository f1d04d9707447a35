"""Shared by the ops tests: the alternative normalizers' formulas, written naively in float64."""
import numpy as np
import pytest


def naive_probs(spec, x, where=None):
  """The papers' formulas in float64 NumPy, written independently of the package."""
  x = np.asarray(x, np.float64)
  where = np.ones(x.shape, bool) if where is None else np.broadcast_to(where, x.shape)
  n = where.sum(-1, keepdims=True)
  name, *arg = spec.split(":")
  with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
    if name == "sigmoid":
      b = float(arg[0]) if arg else -np.log(np.maximum(n, 1))
      p = 1.0 / (1.0 + np.exp(-(x + b)))
    else:
      if name == "softplus":
        s = np.log1p(np.exp(np.log(np.maximum(n, 1)) * x))
        den = np.where(where, s, 0).sum(-1, keepdims=True)
      elif name == "stablemax":
        s = np.where(x >= 0, x + 1, 1 / (1 - x))
        den = np.where(where, s, 0).sum(-1, keepdims=True)
      else:
        eps = float(arg[0]) if arg else 1e-6
        s = np.maximum(np.exp(x) - 1, 0)
        den = np.where(where, np.abs(np.exp(x) - 1), 0).sum(-1, keepdims=True) + eps
      p = s / np.where(den > 0, den, 1)
  return np.where(where, p, 0.0)


@pytest.fixture(name="naive")
def naive_fixture():
  """naive_probs(spec, x, where=None) as a fixture (test modules cannot import conftest by name)."""
  return naive_probs
