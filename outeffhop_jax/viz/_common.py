"""Shared helpers: validated normalizer specs, Agg-backed figures, display names.

Library code builds `matplotlib.figure.Figure` objects with an Agg canvas and never touches pyplot,
so it neither changes the caller's backend nor leaks figures into pyplot's global registry.
"""
from __future__ import annotations

from typing import Sequence

import jax
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from outeffhop_jax.ops import get_normalizer, hopfield_energy, hopfield_retrieve

# The four normalizers the experiments compare: dense, OutEffHop, and two generalized sparse ones.
DEFAULT_NORMALIZERS = ("softmax", "softmax1", "sparsemax", "entmax:1.5")

# Jitted once per (shapes, normalizer, steps), beta traced: the sweeps call these many times, and
# eager `lax.scan` would re-trace and re-compile its freshly made step function on every call.
retrieve = jax.jit(hopfield_retrieve, static_argnames=("normalizer", "max_steps", "tol",
                                                       "return_trajectory"))
energy = jax.jit(hopfield_energy, static_argnames=("normalizer",))

_NAMES = {"softmax": "dense (softmax)", "softmax1": "OutEffHop (softmax1)", "sparsemax": "sparsemax"}


def check_normalizers(normalizers: Sequence[str]) -> tuple[str, ...]:
  """Canonical specs; raises ValueError for an unknown spec or one without a Hopfield energy."""
  if isinstance(normalizers, str):
    normalizers = (normalizers,)
  specs = []
  for spec in normalizers:
    norm = get_normalizer(spec)  # raises a ValueError listing the valid specs
    if norm.kind not in ("sink", "sparse"):  # clipped, sigmoid, softplus, stablemax, softpick
      raise ValueError(f"normalizer {norm.spec!r} has no Hopfield energy; use softmax, softmax1, "
                       "softmax_n:N, sparsemax or entmax:ALPHA")
    specs.append(norm.spec)
  if not specs:
    raise ValueError("need at least one normalizer")
  return tuple(specs)


def check_betas(betas: Sequence[float]) -> tuple[float, ...]:
  if isinstance(betas, (int, float)):
    betas = (betas,)
  betas = tuple(float(b) for b in betas)
  if not betas or any(not b > 0 for b in betas):
    raise ValueError(f"betas must be a non-empty list of positive numbers, got {betas}")
  return betas


def display_name(spec: str) -> str:
  return _NAMES.get(spec, spec)


def new_figure(width: float, height: float) -> Figure:
  """A pyplot-free figure drawn by Agg (savefig to PNG works without any backend selection)."""
  fig = Figure(figsize=(width, height), layout="constrained")
  FigureCanvasAgg(fig)
  return fig
