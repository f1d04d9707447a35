"""The registry of model families: `get(config.family)` is the one place a family name is looked up.

Adding a family: a module defining its `family.Family` object, plus one line in FAMILIES.
"""
from __future__ import annotations

from flax import nnx

from outeffhop_jax.train import forecasting, text, vision
from outeffhop_jax.train.family import Family

FAMILIES: dict[str, Family] = {f.name: f for f in (
    text.OPT, text.BERT, vision.VIT, forecasting.STANHOP)}


def get(name: str) -> Family:
  """The family called `name` (config.family); ValueError naming the known ones otherwise."""
  if name not in FAMILIES:
    raise ValueError(f"config.family: unknown {name!r} (one of {sorted(FAMILIES)})")
  return FAMILIES[name]


def for_task(task_name: str) -> Family:
  """The family whose task is called `task_name`."""
  for f in FAMILIES.values():
    if f.task_name == task_name:
      return f
  raise ValueError(f"unknown task {task_name!r} (one of "
                   f"{sorted(f.task_name for f in FAMILIES.values())})")


def build_model(family: str, model_cfg, seed: int) -> nnx.Module:
  """The model for `family` from its frozen config; dropout draws from its own stream."""
  return get(family).model_cls(model_cfg, rngs=nnx.Rngs(seed, params=seed, dropout=seed + 1))


def make_task(config, tokenizer=None):
  """The task object for config.family (tokenizer: for the LM tasks' special ids)."""
  return get(config.family).make_task(config, tokenizer)
