"""What the experiment writers share: PNG saving, JSON of NumPy values, results.json + results.md."""
from __future__ import annotations

import json
import os

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


def write_json(path: str, obj) -> str:
  """Writes obj as indented JSON (NumPy values as Python ones) via a temporary file and a rename,
  so a reader, or a run killed mid-write, never sees a partial file; returns path."""
  tmp = path + ".tmp"
  try:
    with open(tmp, "w") as f:
      json.dump(obj, f, indent=1, default=json_default)
  except BaseException:
    os.remove(tmp)
    raise
  os.replace(tmp, path)
  return path


def write_results(out: str, results: dict, markdown: str) -> None:
  """OUT/results.json (results) and OUT/results.md (markdown): every experiment's two reports."""
  write_json(os.path.join(out, "results.json"), results)
  with open(os.path.join(out, "results.md"), "w") as f:
    f.write(markdown)
