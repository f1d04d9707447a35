"""The forecasting family (STanHop-Net): standardised windows, MSE loss, MSE / MAE metrics.

Its task, its model config resolved against the data (n_series from the data), and the grain
pipelines of each split. Its configs are built by `config_lib.forecasting_config`.

Stats are sums as every task's: `loss_sum` = sum of squared errors, `weight` = number of predicted
values (example x out_len x series) and `correct` = sum of absolute errors, so the loop's generic
`correct / weight` is the MAE and `loss` the MSE (evaluation reports them as "mse" and "mae").
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp
import numpy as np

from outeffhop_jax.data import timeseries
from outeffhop_jax.models import STanHopConfig, STanHopNet
from outeffhop_jax.train import config_lib
from outeffhop_jax.train.family import Family, resolve

# The config-building names, where they were before config_lib held them.
EXTRA_VARIANTS = config_lib.FORECASTING_EXTRA_VARIANTS
variant_overrides = config_lib.forecasting_variant_overrides


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
  return int(config.model.get("in_len", STanHopConfig.PRESETS[config.model_preset].get(
      "in_len", STanHopConfig.in_len)))


def resolved_model_config(config, tokenizer=None):
  """STanHopConfig.from_preset(model_preset, **model): n_series from the data, normalizer / gate /
  learn_alpha from config.variant (unless set in config.model); checks the data."""
  del tokenizer
  n = series_splits(config).n_series
  cfg = resolve(config, STanHopConfig,
                {"n_series": n, **variant_overrides(config.variant)[1]})
  if cfg.n_series != n:
    raise ValueError(f"config.model.n_series ({cfg.n_series}) does not match the {n} series of "
                     f"config.data.dataset {config.data.dataset!r}")
  return cfg


def make_task(config, tokenizer=None) -> Forecasting:
  cfg = resolved_model_config(config, tokenizer)
  return Forecasting(in_len=cfg.in_len, out_len=cfg.out_len, n_series=cfg.n_series)


def dataset(config, tokenizer, split: str, *, train: bool, batch_size: int, **pipeline_kwargs):
  """The grain pipeline of one split (pipeline_kwargs: seed, process_index/count, prefetch)."""
  task = make_task(config, tokenizer)
  return timeseries.window_dataset(series_splits(config)[split], in_len=task.in_len,
                                   out_len=task.out_len, batch_size=batch_size, train=train,
                                   **pipeline_kwargs)


def num_eval_batches(config, tokenizer, batch_size: int) -> int:
  task = make_task(config, tokenizer)
  return timeseries.eval_batches_count(series_splits(config)[config.data.eval_split],
                                       task.in_len, task.out_len, batch_size)


def _summary(out: dict) -> dict:
  return {"mse": out["loss"], "mae": out["accuracy"]}


STANHOP = Family(
    name="stanhop", model_cls=STanHopNet, config_cls=STanHopConfig, task_name="forecasting",
    text=False, variants=config_lib.VARIANTS + tuple(EXTRA_VARIANTS),
    positive_fields=("data.seq_len",), dataset_prefixes=("embedded", "tfds:", "csv:"),
    resolve_model_config=resolved_model_config, make_task=make_task, dataset=dataset,
    eval_batches_for_split=num_eval_batches, summary=_summary)
