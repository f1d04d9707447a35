"""What the study, encoder-study and repair writers share: PNG saving and JSON of NumPy values."""
from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def save_figure(fig: Figure, path: str) -> str:
  """Renders with the Agg canvas (no display, no pyplot state) and writes a PNG; returns path."""
  FigureCanvasAgg(fig)
  fig.savefig(path, dpi=110, bbox_inches="tight")
  return path


def json_default(x):
  """`json.dump(..., default=json_default)`: NumPy scalars and arrays as Python values."""
  if isinstance(x, (np.floating, np.integer, np.bool_)):
    return x.item()
  if isinstance(x, np.ndarray):
    return x.tolist()
  raise TypeError(f"not JSON serialisable: {type(x)}")
