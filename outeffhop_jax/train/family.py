"""A model family as the training system sees it: one `Family` object per family.

The generic code (input, setup, checks, evaluation, loop) asks the family of `config.family` (see
`families.get`) for what differs between families; it never branches on a family's name. A new
family is one module defining a `Family` plus one line in `families.FAMILIES`.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

from outeffhop_jax.train import config_lib


@dataclasses.dataclass(frozen=True)
class Family:
  """What the training system needs to know about one model family.

  name: config.family. model_cls / config_cls: the Flax NNX model and its frozen config class.
  task_name: the task's name (causal_lm, masked_lm, classification, forecasting).
  text: batches are rows of tokens (a tokenizer, throughput in tokens/s); else examples.
  variants: the ":variant" names the family accepts.
  positive_fields: "section.field" config fields that must be positive numbers.
  dataset_prefixes: accepted config.data.dataset values ("embedded") or prefixes ("tfds:").
  resolve_model_config(config, tokenizer) -> the model config (see `resolve`).
  make_task(config, tokenizer) -> the task (batch shapes, model inputs, summed statistics).
  dataset(config, tokenizer, split, *, train, batch_size, **pipeline) -> grain IterDataset of
    this host's batches (pipeline: seed, process_index, process_count, prefetch).
  eval_batches_for_split(config, tokenizer, batch_size) -> batches covering the eval split.
  summary(out) -> the task's extra evaluation metrics from {"loss", "accuracy", "count"}.
  """
  name: str
  model_cls: type
  config_cls: type
  task_name: str
  text: bool
  variants: tuple[str, ...]
  positive_fields: tuple[str, ...]
  dataset_prefixes: tuple[str, ...]
  resolve_model_config: Callable[[Any, Any], Any]
  make_task: Callable[..., Any]
  dataset: Callable[..., Any]
  eval_batches_for_split: Callable[[Any, Any, int], int]
  summary: Callable[[dict], dict]


def no_summary(out: dict) -> dict:
  del out
  return {}


def resolve(config, config_cls, derived: dict):
  """`config_cls.from_preset(model_preset, **fields)`: `derived` (from the data, the compute dtype
  and the variant) first, then the fields set explicitly in config.model, which win."""
  fields = {f.name for f in dataclasses.fields(config_cls)}
  overrides = {k: v for k, v in derived.items() if k in fields}
  if config.train.compute_dtype not in (None, "float32"):
    overrides["dtype"] = config.train.compute_dtype
  explicit = config_lib.explicit_model_fields(config)
  unknown = sorted(set(config.model) - fields)
  if unknown:
    raise ValueError(f"config.model: {config_cls.__name__} has no field(s) {unknown}; "
                     f"fields: {sorted(fields)}")
  overrides.update(explicit)
  try:
    return config_cls.from_preset(config.model_preset, **overrides)
  except ValueError as e:
    raise ValueError(f"config.model / config.model_preset: {e}") from None
