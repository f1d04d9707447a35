"""Multivariate time series for forecasting: CSV loader (ETT / WTH layout), splits, windows, grain.

Layout: a CSV with a date column and one numeric column per series (ETTh1: date, HUFL, HULL, MUFL,
MULL, LUFL, LULL, OT). Splits follow Informer / Crossformer:
  "ett_hour"    12 / 4 / 4 months of hourly rows (30-day months): 8640 / 2880 / 2880
  "ett_minute"  the same months of 15-minute rows (x 4)
  "ratio"       70 / 10 / 20 % (WTH, ECL, ...)
  "auto"        ett_hour for ETTh*, ett_minute for ETTm*, ratio otherwise
Validation and test start in_len rows early, so their first window reads the previous split's
tail and every target row of a split is predicted. Each series is standardised with the mean and
std of the train rows only. A window is (x [in_len, C], y [out_len, C]) at every offset (stride 1).

The embedded default needs no download: statsmodels ships monthly real data in its package
folder, read here as plain CSV: Mauna Loa CO2 (weekly, averaged per month) and the El Nino sea
surface temperatures (monthly), 1958-03 .. 2001-12 (526 months, 2 series, both with a yearly cycle).
"""
from __future__ import annotations

import csv
import dataclasses
import functools
import importlib.util
import math
import os

import grain
import grain.experimental as grain_exp
import numpy as np

from outeffhop_jax.data.pipeline import pad_batch

SPLITS = ("train", "validation", "test")
SPLIT_RULES = ("auto", "ett_hour", "ett_minute", "ratio")
_ETT_MONTH_ROWS = 30 * 24


def load_csv(path: str, *, columns=None, date_column: str | None = "date"):
  """(values float32 [T, C], series names) of a CSV; `columns` selects series by name (default all
  but the date column). Missing values (empty / NaN) are filled from the previous row."""
  with open(path, newline="") as f:
    rows = list(csv.reader(f))
  if len(rows) < 2:
    raise ValueError(f"{path}: needs a header and at least one row")
  header = [h.strip() for h in rows[0]]
  names = [h for h in header if h != date_column] if columns is None else list(columns)
  missing = [n for n in names if n not in header]
  if missing:
    raise ValueError(f"{path}: no column(s) {missing}; header {header}")
  idx = [header.index(n) for n in names]
  try:
    values = np.asarray([[float(r[i]) if r[i].strip() else np.nan for i in idx] for r in rows[1:]],
                        np.float64)
  except (ValueError, IndexError) as e:
    raise ValueError(f"{path}: non-numeric or short row in series columns {names}: {e}") from None
  return _ffill(values).astype(np.float32), names


def _ffill(values):
  """Fills NaNs from the previous row (leading NaNs from the first valid row)."""
  values = values.copy()
  for c in range(values.shape[1]):
    col = values[:, c]
    ok = ~np.isnan(col)
    if not ok.any():
      raise ValueError(f"series column {c} has no value")
    idx = np.where(ok, np.arange(len(col)), 0)
    np.maximum.accumulate(idx, out=idx)
    col[:] = col[idx]
    col[:np.argmax(ok)] = col[np.argmax(ok)]
  return values


def _statsmodels_csv(name: str) -> str:
  spec = importlib.util.find_spec("statsmodels")
  if spec is None or not spec.submodule_search_locations:
    raise ImportError("the embedded time series is read from statsmodels' package data: "
                      "pip install statsmodels")
  return os.path.join(spec.submodule_search_locations[0], "datasets", name, f"{name}.csv")


@functools.cache
def embedded_series():
  """(values float32 [526, 2], ["co2", "elnino"]): monthly, 1958-03 .. 2001-12 (module docstring)."""
  with open(_statsmodels_csv("co2"), newline="") as f:
    rows = list(csv.reader(f))[1:]
  by_month: dict[tuple[int, int], list[float]] = {}
  for date, value in rows:
    if value.strip():
      y, m = int(date[:4]), int(date[4:6])  # YYYYMMDD
      by_month.setdefault((y, m), []).append(float(value))
  with open(_statsmodels_csv("elnino"), newline="") as f:
    rows = list(csv.reader(f))[1:]
  elnino = {(int(float(r[0])), m + 1): float(v) for r in rows for m, v in enumerate(r[1:13])}
  months = [(y, m) for y in range(1958, 2002) for m in range(1, 13) if (y, m) >= (1958, 3)]
  co2 = np.asarray([np.mean(by_month[k]) if k in by_month else np.nan for k in months])
  values = np.stack([co2, [elnino[k] for k in months]], axis=1)
  return _ffill(values).astype(np.float32), ["co2", "elnino"]


def split_rule_for(dataset: str, rule: str = "auto") -> str:
  if rule not in SPLIT_RULES:
    raise ValueError(f"split rule must be one of {SPLIT_RULES}, got {rule!r}")
  if rule != "auto":
    return rule
  base = os.path.basename(dataset)
  return "ett_hour" if base.startswith("ETTh") else "ett_minute" if base.startswith("ETTm") else "ratio"


def split_borders(n: int, rule: str, in_len: int) -> dict[str, tuple[int, int]]:
  """{split: (start, end)} row ranges; validation and test start in_len rows before their rows."""
  if rule in ("ett_hour", "ett_minute"):
    month = _ETT_MONTH_ROWS * (4 if rule == "ett_minute" else 1)
    train_end, val_end, test_end = 12 * month, 16 * month, 20 * month
    if n < test_end:
      raise ValueError(f"rule {rule!r} needs {test_end} rows (12/4/4 months), the data has {n}")
  elif rule == "ratio":
    train_end = int(n * 0.7)
    test_len = int(n * 0.2)
    val_end, test_end = n - test_len, n
  else:
    raise ValueError(f"split rule must be one of {SPLIT_RULES[1:]}, got {rule!r}")
  if train_end < in_len:
    raise ValueError(f"the train split ({train_end} rows) is shorter than in_len ({in_len})")
  return {"train": (0, train_end), "validation": (train_end - in_len, val_end),
          "test": (val_end - in_len, test_end)}


@dataclasses.dataclass(frozen=True)
class SeriesSplits:
  """Standardised splits [T_split, C] float32 and the train statistics used for them."""
  splits: dict
  mean: np.ndarray
  std: np.ndarray
  names: tuple

  @property
  def n_series(self) -> int:
    return len(self.names)

  def __getitem__(self, split: str) -> np.ndarray:
    if split not in self.splits:
      raise ValueError(f"unknown split {split!r}; one of {SPLITS}")
    return self.splits[split]

  def inverse(self, x):
    """Back to the data's units."""
    return np.asarray(x) * self.std + self.mean


def prepare(values, names, *, rule: str, in_len: int) -> SeriesSplits:
  """Splits `values` [T, C] by `rule` and standardises each series with train statistics."""
  values = np.asarray(values, np.float32)
  borders = split_borders(len(values), rule, in_len)
  train = values[slice(*borders["train"])]
  mean = train.mean(axis=0)
  std = train.std(axis=0)
  std = np.where(std > 0, std, 1.0).astype(np.float32)  # a constant series stays finite
  splits = {k: ((values[a:b] - mean) / std).astype(np.float32) for k, (a, b) in borders.items()}
  return SeriesSplits(splits, mean, std, tuple(names))


@functools.cache
def load(dataset: str, *, rule: str = "auto", in_len: int, columns: tuple | None = None) -> SeriesSplits:
  """"embedded" or "csv:PATH" -> standardised splits (cached per arguments)."""
  if dataset == "embedded":
    values, names = embedded_series()
    if columns is not None:
      keep = [names.index(c) for c in columns]
      values, names = values[:, keep], [names[i] for i in keep]
  elif dataset.startswith("csv:"):
    values, names = load_csv(dataset[len("csv:"):], columns=columns)
  else:
    raise ValueError(f"unknown time-series dataset {dataset!r} (expected 'embedded' or 'csv:PATH')")
  return prepare(values, names, rule=split_rule_for(dataset, rule), in_len=in_len)


def num_windows(length: int, in_len: int, out_len: int) -> int:
  return max(length - in_len - out_len + 1, 0)


def windows(array, in_len: int, out_len: int, starts=None):
  """(x [N, in_len, C], y [N, out_len, C]) at `starts` (default every offset)."""
  array = np.asarray(array)
  if starts is None:
    starts = np.arange(num_windows(len(array), in_len, out_len))
  idx = np.asarray(starts)[:, None] + np.arange(in_len + out_len)[None]
  w = array[idx]
  return w[:, :in_len], w[:, in_len:]


def memory_bank(array, in_len: int, num: int, out_len: int = 0):
  """`num` evenly spaced input windows [num, in_len, C] of `array` (a Plug-and-Play bank)."""
  n = num_windows(len(array), in_len, out_len)
  if n <= 0:
    raise ValueError(f"an array of {len(array)} rows holds no window of {in_len} + {out_len}")
  starts = np.linspace(0, n - 1, min(num, n)).round().astype(int)
  return windows(array, in_len, 0, starts)[0]


def window_dataset(array, *, in_len: int, out_len: int, batch_size: int, train: bool, seed: int = 0,
                   process_index: int = 0, process_count: int = 1,
                   prefetch: int = 2) -> grain.IterDataset:
  """Batches {"x": [b, in_len, C], "y": [b, out_len, C], "example_mask": [b]} of one split.

  Train: every window, reshuffled per epoch, repeated, full batches. Eval: one pass in order, the
  last batch padded (example_mask 0). Each host reads windows [process_index::process_count].
  """
  array = np.asarray(array, np.float32)
  n = num_windows(len(array), in_len, out_len)
  if n == 0:
    raise ValueError(f"a split of {len(array)} rows holds no window of in_len {in_len} + "
                     f"out_len {out_len}")
  ds = grain.MapDataset.range(n)[process_index::process_count]
  if train:
    ds = ds.shuffle(seed=seed).repeat(None)
  ds = ds.batch(batch_size, drop_remainder=train)

  def gather(starts):
    x, y = windows(array, in_len, out_len, starts)
    return pad_batch({"x": x, "y": y, "example_mask": np.ones(len(starts), np.float32)},
                     batch_size)

  it = ds.map(gather).to_iter_dataset()
  if prefetch:
    it = grain_exp.ThreadPrefetchIterDataset(it, prefetch_buffer_size=prefetch)
  return it


def eval_batches_count(array, in_len: int, out_len: int, batch_size: int) -> int:
  return max(math.ceil(num_windows(len(array), in_len, out_len) / batch_size), 1)
