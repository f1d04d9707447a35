"""Metrics out: JSON lines (workdir/metrics.jsonl), TensorBoard events and a progress bar.

Only process 0 writes. TensorBoard goes through tensorboardX (protobuf only, no TensorFlow); if it
is not installed the JSON lines are still written.
"""
from __future__ import annotations

import json
import logging
import math
import os
import sys
import time

import numpy as np


class MetricWriter:

  def __init__(self, workdir: str, *, enabled: bool = True, tensorboard: bool = True):
    self.enabled = enabled
    self._jsonl = None
    self._tb = None
    if not enabled:
      return
    os.makedirs(workdir, exist_ok=True)
    self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a", buffering=1)
    if tensorboard:
      try:
        from tensorboardX import SummaryWriter
        self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"), flush_secs=30)
      except ImportError:
        logging.warning("tensorboardX not installed: TensorBoard events are not written")

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


def _scalar(v):
  v = np.asarray(v)
  return float(v) if v.dtype.kind == "f" else int(v) if v.dtype.kind in "iub" else str(v)


class ProgressBar:
  """tqdm bar (steps) with loss and tokens/s in its postfix; plain log lines when not a terminal."""

  def __init__(self, total: int, initial: int, *, enabled: bool = True):
    self._bar = None
    if enabled:
      from tqdm import tqdm
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
