"""Seed statistics for studies: mean with a Student-t confidence interval, and paired differences.

With K seeds x_1..x_K of one metric, the interval is mean ± t_{(1+c)/2, K-1} · s / sqrt(K), s the
sample standard deviation (ddof = 1). A paired difference compares two variants run with the same
seeds (same data order and init seed): d_k = x_k(variant) − x_k(baseline), and its interval is the
t-interval of the d_k, which removes the seed-to-seed variation both variants share.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np
from scipy import stats as _scipy_stats


@dataclasses.dataclass(frozen=True)
class Interval:
  """mean ± half_width at `confidence`, over `n` values (half_width is nan for n < 2)."""
  mean: float
  half_width: float
  n: int
  confidence: float = 0.95

  @property
  def low(self) -> float:
    return self.mean - self.half_width

  @property
  def high(self) -> float:
    return self.mean + self.half_width

  def excludes_zero(self) -> bool:
    """True when the whole interval lies on one side of 0 (a difference beyond seed noise)."""
    return self.n >= 2 and (self.low > 0 or self.high < 0)


def _finite(values: Sequence[float], name: str) -> np.ndarray:
  x = np.asarray(values, dtype=np.float64).reshape(-1)
  if x.size == 0:
    raise ValueError(f"{name}: need at least one value, got none")
  if not np.all(np.isfinite(x)):
    raise ValueError(f"{name}: values must be finite, got {x.tolist()}")
  return x


def t_interval(values: Sequence[float], confidence: float = 0.95, name: str = "values") -> Interval:
  """Mean and Student-t half-width of `values` (one per seed)."""
  if not 0.0 < confidence < 1.0:
    raise ValueError(f"confidence must be in (0, 1), got {confidence}")
  x = _finite(values, name)
  n = int(x.size)
  mean = float(np.mean(x))
  if n < 2:
    return Interval(mean, math.nan, n, confidence)
  sem = float(np.std(x, ddof=1)) / math.sqrt(n)
  t = float(_scipy_stats.t.ppf(0.5 + confidence / 2.0, df=n - 1))
  return Interval(mean, t * sem, n, confidence)


def paired_difference(variant: Sequence[float], baseline: Sequence[float],
                      confidence: float = 0.95) -> Interval:
  """t-interval of variant_k − baseline_k over seeds k (the two lists are paired by seed)."""
  a, b = _finite(variant, "variant"), _finite(baseline, "baseline")
  if a.shape != b.shape:
    raise ValueError(f"paired_difference: variant has {a.size} seeds and baseline {b.size}; "
                     "pairs need the same seeds")
  return t_interval(a - b, confidence, name="variant - baseline")


def relative_paired_difference(variant: Sequence[float], baseline: Sequence[float],
                               confidence: float = 0.95) -> Interval:
  """t-interval of (variant_k / baseline_k − 1) over seeds: the change as a fraction of baseline."""
  a, b = _finite(variant, "variant"), _finite(baseline, "baseline")
  if a.shape != b.shape:
    raise ValueError(f"relative_paired_difference: variant has {a.size} seeds and baseline "
                     f"{b.size}; pairs need the same seeds")
  if np.any(b == 0):
    raise ValueError("relative_paired_difference: baseline has a zero value")
  return t_interval(a / b - 1.0, confidence, name="variant / baseline - 1")


def format_interval(iv: Interval, digits: int = 3, signed: bool = False) -> str:
  """"m ± h" ("m" alone for one seed); `signed` puts a + on positive means (differences)."""
  sign = "+" if signed else ""
  if iv.n < 2:
    return f"{iv.mean:{sign}.{digits}f}"
  return f"{iv.mean:{sign}.{digits}f} ± {iv.half_width:.{digits}f}"
