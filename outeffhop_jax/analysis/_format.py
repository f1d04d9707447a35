"""Number formatting shared by every report of the analysis package (study, inspect, repair).

    num(3.14159)             -> "3.14"       num(None) / num(nan) -> "–"
    num(23341.5)             -> "23342"      grouped(23341.5) -> "23,342"
    mean_std({"mean": 1.5, "std": 0.25})             -> "1.5000 ± 0.2500"
    mean_std({"mean": 1.5, "std": 0.25}, 3, compact=True) -> "1.500 ± 0.250" (num() of each)
    sci(2.5e-4)              -> "2.5e-04"    dims([3, 7, 9, 11, 12]) -> "3, 7, 9, 11, …"
"""
from __future__ import annotations

import math

DASH = "–"


def _missing(x) -> bool:
  return x is None or (isinstance(x, float) and math.isnan(x))


def num(x, digits: int = 2, *, grouped: bool = False) -> str:
  """`digits` decimals; |x| >= 1000 as an integer (with thousands commas when `grouped`)."""
  if _missing(x):
    return DASH
  if abs(x) >= 1000:
    return f"{x:,.0f}" if grouped else f"{x:.0f}"
  return f"{x:.{digits}f}"


def grouped(x, digits: int = 2) -> str:
  """num() with thousands commas for |x| >= 1000 (the encoder reports' style)."""
  return num(x, digits, grouped=True)


def mean_std(q: dict, digits: int = 4, *, compact: bool = False) -> str:
  """"mean ± std" of q = {"mean", "std"}: fixed decimals, or num() of each when `compact`."""
  if compact:
    return f"{num(q['mean'], digits)} ± {num(q['std'], digits)}"
  return f"{q['mean']:.{digits}f} ± {q['std']:.{digits}f}"


def sci(x) -> str:
  """A fraction in scientific notation with one decimal ("–" for None / NaN)."""
  return DASH if _missing(x) else f"{x:.1e}"


def dims(ds, n: int = 4) -> str:
  """The first n of a list of hidden dimensions, "…" when there are more ("–" when empty)."""
  if not ds:
    return DASH
  return ", ".join(map(str, ds[:n])) + (", …" if len(ds) > n else "")
