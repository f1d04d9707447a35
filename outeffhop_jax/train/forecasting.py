"""The forecasting task (STanHop-Net): standardised windows, MSE loss, MSE / MAE metrics.

The training system's hooks for family "stanhop" live here: the task, the model config resolved
against the data (n_series from the data), the grain pipelines of each split, the evaluation batch
count, the attention variants of configs/stanhop_*.py, and two reference baselines.

Stats are sums as every task's: `loss_sum` = sum of squared errors, `weight` = number of predicted
values (example x out_len x series) and `correct` = sum of absolute errors, so the loop's generic
`correct / weight` is the MAE and `loss` the MSE (evaluation reports them as "mse" and "mae").
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp
import numpy as np
from ml_collections import config_dict

from outeffhop_jax.data import timeseries
from outeffhop_jax.train import config_lib

# Variants of the OutEffHop study (config_lib.VARIANTS, with config_lib's "stanhop" clipping gamma
# and gate) on the Hopfield layers; vanilla = softmax. "gsh" is STanHop's own generalized sparse
# Hopfield (entmax, learnable alpha from 1.5), run with the vanilla options otherwise.
EXTRA_VARIANTS = {"gsh": ("vanilla", "entmax:1.5", True), "sparsemax": ("vanilla", "sparsemax", False)}


def variant_overrides(variant: str) -> tuple[str, dict]:
  """(config variant, model overrides) for a study variant or one of EXTRA_VARIANTS."""
  if variant in EXTRA_VARIANTS:
    base, norm, learn = EXTRA_VARIANTS[variant]
    return base, {"normalizer": norm, "learn_alpha": learn, "gate": "none"}
  if variant not in config_lib.VARIANTS:
    raise ValueError(f"config variant: unknown {variant!r} (one of "
                     f"{config_lib.VARIANTS + tuple(EXTRA_VARIANTS)})")
  # seq_len only matters for OPT's length-scaled clipping.
  out = {"learn_alpha": False, "gate": "none",
         **config_lib.variant_overrides("stanhop", variant, seq_len=0)}
  return variant, out


def base_config(arg, model_preset: str):
  """config_lib.base_config for family "stanhop" with the forecasting data fields.

  The variant (one of config_lib.VARIANTS or EXTRA_VARIANTS) is resolved into model fields when
  the model config is built (`resolved_model_config`), after command-line overrides.
  """
  c = config_lib.base_config("stanhop", config_lib.parse_arg(arg, "softmax1"),
                             model_preset=model_preset,
                             variants=config_lib.VARIANTS + tuple(EXTRA_VARIANTS))
  c.model.learn_alpha = config_dict.placeholder(bool)  # GSH's learnable alpha: from the variant
  c.data.dataset = "embedded"  # or "csv:/path/ETTh1.csv"
  c.data.split_rule = "auto"  # auto | ett_hour | ett_minute | ratio
  c.data.columns = ()  # series to read (empty: every column but the date)
  c.train.tensorboard = False
  return c


def finish(c):
  """Keeps data.seq_len (checked by the training system) equal to the model's in_len."""
  if "in_len" in c.model:
    c.data.seq_len = int(c.model.in_len)
  return c


@dataclasses.dataclass(frozen=True)
class Forecasting:
  """Direct multi-step forecasting of every series: model(x [b, in_len, C]) -> [b, out_len, C]."""
  in_len: int
  out_len: int
  n_series: int
  name: str = "forecasting"

  def batch_shapes(self, batch_size: int, seq_len: int = 0) -> dict[str, Any]:
    del seq_len
    return {"x": ((batch_size, self.in_len, self.n_series), np.float32),
            "y": ((batch_size, self.out_len, self.n_series), np.float32),
            "example_mask": ((batch_size,), np.float32)}

  def inputs(self, batch, rng=None):
    del rng
    return batch["x"]

  def stats(self, model, batch, rng, *, deterministic: bool):
    del rng
    pred = model(batch["x"], deterministic=deterministic).astype(jnp.float32)
    w = batch["example_mask"][:, None, None]
    err = pred - batch["y"]
    return {"loss_sum": jnp.sum(err * err * w),
            "weight": jnp.sum(w) * self.out_len * self.n_series,
            "correct": jnp.sum(jnp.abs(err) * w)}


def series_splits(config) -> timeseries.SeriesSplits:
  d = config.data
  columns = tuple(d.columns) if d.get("columns") else None
  return timeseries.load(d.dataset, rule=d.get("split_rule", "auto"), in_len=_in_len(config),
                         columns=columns)


def _in_len(config) -> int:
  from outeffhop_jax.models.stanhop import STanHopConfig

  return int(config.model.get("in_len", STanHopConfig.PRESETS[config.model_preset].get(
      "in_len", STanHopConfig.in_len)))


def resolved_model_config(config):
  """STanHopConfig.from_preset(model_preset, **model): n_series from the data, normalizer / gate /
  learn_alpha from config.variant (unless set in config.model); checks the data."""
  from outeffhop_jax.models.stanhop import STanHopConfig

  n = series_splits(config).n_series
  overrides = {"n_series": n}
  if config.train.compute_dtype not in (None, "float32"):
    overrides["dtype"] = config.train.compute_dtype
  overrides.update(variant_overrides(config.variant)[1])  # resolved after command-line overrides
  overrides.update(config_lib.explicit_model_fields(config))  # explicit model fields win
  fields = {f.name for f in dataclasses.fields(STanHopConfig)}
  unknown = sorted(set(config.model) - fields)
  if unknown:
    raise ValueError(f"config.model: STanHopConfig has no field(s) {unknown}; fields: {sorted(fields)}")
  try:
    cfg = STanHopConfig.from_preset(config.model_preset, **overrides)
  except ValueError as e:
    raise ValueError(f"config.model / config.model_preset: {e}") from None
  if cfg.n_series != n:
    raise ValueError(f"config.model.n_series ({cfg.n_series}) does not match the {n} series of "
                     f"config.data.dataset {config.data.dataset!r}")
  return cfg


def make_task(config) -> Forecasting:
  cfg = resolved_model_config(config)
  return Forecasting(in_len=cfg.in_len, out_len=cfg.out_len, n_series=cfg.n_series)


def dataset(config, split: str, *, train: bool, batch_size: int, **pipeline_kwargs):
  """The grain pipeline of one split (pipeline_kwargs: seed, process_index/count, prefetch)."""
  task = make_task(config)
  return timeseries.window_dataset(series_splits(config)[split], in_len=task.in_len,
                                   out_len=task.out_len, batch_size=batch_size, train=train,
                                   **pipeline_kwargs)


def num_eval_batches(config, batch_size: int) -> int:
  task = make_task(config)
  return timeseries.eval_batches_count(series_splits(config)[config.data.eval_split],
                                       task.in_len, task.out_len, batch_size)


def evaluate_split(model, config, split: str = "test") -> dict[str, float]:
  """{"mse", "mae", "count"} of `model` over every window of `split` (standardised units)."""
  from outeffhop_jax.train import evaluation  # noqa: PLC0415 (evaluation imports the loop's setup)

  c = config.copy_and_resolve_references()
  c.data.eval_split = split
  c.train.num_eval_batches = -1
  out = evaluation.evaluate(model, c)
  return {"mse": out["loss"], "mae": out["accuracy"], "count": out["count"]}


# ---- Reference baselines (numpy, standardised units) ------------------------------------------

def repeat_last_window(x_NLC, out_len: int):
  """Predicts the last out_len input steps again (tiled if out_len > in_len): [N, out_len, C]."""
  x_NLC = np.asarray(x_NLC)
  reps = -(-out_len // x_NLC.shape[1])
  return np.tile(x_NLC, (1, reps, 1))[:, -out_len:] if reps > 1 else x_NLC[:, -out_len:]


def fit_linear(x_NLC, y_NOC, ridge: float = 1e-3):
  """Least-squares linear map from a series' window to its forecast, shared by the series
  (as NLinear / DLinear): y_c = x_c W + b. Returns predict(x_NLC) -> [N, out_len, C]."""
  x = np.asarray(x_NLC, np.float64).transpose(0, 2, 1).reshape(-1, x_NLC.shape[1])
  y = np.asarray(y_NOC, np.float64).transpose(0, 2, 1).reshape(-1, y_NOC.shape[1])
  xa = np.concatenate([x, np.ones((len(x), 1))], axis=1)
  w = np.linalg.solve(xa.T @ xa + ridge * np.eye(xa.shape[1]), xa.T @ y)

  def predict(x_NLC):
    x_NCL = np.asarray(x_NLC, np.float64).transpose(0, 2, 1)
    y_NCO = np.concatenate([x_NCL, np.ones(x_NCL.shape[:2] + (1,))], axis=-1) @ w
    return y_NCO.transpose(0, 2, 1).astype(np.float32)

  return predict
