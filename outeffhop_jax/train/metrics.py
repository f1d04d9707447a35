"""Metrics out: JSON lines (workdir/metrics.jsonl), TensorBoard events and a progress bar.

Only process 0 writes. TensorBoard goes through tensorboardX (protobuf only, no TensorFlow); if it
is not installed the JSON lines are still written.

Every record starts on a fresh line: a run killed mid-write leaves a partial last line, and the
next run's first record goes on the line after it. `load_metrics(workdir)` reads the records back,
skipping damaged lines with a warning that says how many.
"""
from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
import warnings

import numpy as np
from tqdm import tqdm

METRICS_FILE = "metrics.jsonl"


class MetricWriter:

  def __init__(self, workdir: str, *, enabled: bool = True, tensorboard: bool = True):
    self.enabled = enabled
    self._jsonl = None
    self._tb = None
    if not enabled:
      return
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, METRICS_FILE)
    torn = _ends_without_newline(path)
    self._jsonl = open(path, "a", buffering=1)
    if torn:  # a partial last record (killed mid-write): keep it on its own line
      self._jsonl.write("\n")
    if tensorboard:
      # Imported here: tensorboardX pulls in torch where it is installed (~1.7 s a process).
      try:  # a dependency, but the JSON lines do not need it
        from tensorboardX import SummaryWriter
      except ImportError:
        logging.warning("tensorboardX not installed: TensorBoard events are not written")
      else:
        self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"), flush_secs=30)

  def write(self, step: int, metrics: dict, prefix: str = ""):
    if not self.enabled:
      return
    clean = {f"{prefix}{k}": _scalar(v) for k, v in metrics.items()}
    self._jsonl.write(json.dumps({"step": int(step), "time": time.time(), **clean}) + "\n")
    if self._tb is not None:
      for k, v in clean.items():
        if isinstance(v, float) and math.isfinite(v):
          self._tb.add_scalar(k, v, int(step))

  def close(self):
    if self._jsonl is not None:
      self._jsonl.close()
    if self._tb is not None:
      self._tb.close()


def _ends_without_newline(path: str) -> bool:
  if not os.path.exists(path) or os.path.getsize(path) == 0:
    return False
  with open(path, "rb") as f:
    f.seek(-1, os.SEEK_END)
    return f.read(1) != b"\n"


def load_metrics(workdir: str) -> list[dict]:
  """The records of workdir/metrics.jsonl in order ({"step", "time", "train/loss", ...}).

  Lines that are not a JSON object with an integer "step" (a partial record from a run killed
  mid-write, garbage) are skipped, and a warning says how many and which line numbers.
  """
  path = os.path.join(workdir, METRICS_FILE)
  records, bad = [], []
  with open(path, encoding="utf-8", errors="replace") as f:
    for number, line in enumerate(f, 1):
      if not line.strip():
        continue
      try:
        rec = json.loads(line)
      except ValueError:
        rec = None
      if isinstance(rec, dict) and isinstance(rec.get("step"), int):
        records.append(rec)
      else:
        bad.append(number)
  if bad:
    shown = ", ".join(map(str, bad[:10])) + (", ..." if len(bad) > 10 else "")
    warnings.warn(f"{path}: skipped {len(bad)} damaged line(s) (line {shown})", stacklevel=2)
  return records


def _scalar(v):
  v = np.asarray(v)
  return float(v) if v.dtype.kind == "f" else int(v) if v.dtype.kind in "iub" else str(v)


class ProgressBar:
  """tqdm bar (steps) with loss and tokens/s in its postfix; plain log lines when not a terminal."""

  def __init__(self, total: int, initial: int, *, enabled: bool = True):
    self._bar = None
    if enabled:
      self._bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True,
                       file=sys.stderr, disable=not sys.stderr.isatty(), smoothing=0.1)
    self._tty = bool(self._bar is not None and not self._bar.disable)
    self._enabled = enabled

  def update(self, step: int, n: int, postfix: dict):
    if not self._enabled:
      return
    text = " ".join(f"{k}={_fmt(v)}" for k, v in postfix.items())
    if self._tty:
      self._bar.update(n)
      self._bar.set_postfix_str(text, refresh=False)
    else:
      print(f"step {step}: {text}", flush=True)

  def write(self, text: str):
    if self._tty:
      self._bar.write(text)
    elif self._enabled:
      print(text, flush=True)

  def close(self):
    if self._bar is not None:
      self._bar.close()


def _fmt(v) -> str:
  if isinstance(v, float):
    return f"{v:.4g}" if abs(v) < 1e5 else f"{v:.3e}"
  return str(v)
