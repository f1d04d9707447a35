"""The image family: ViT classification."""
from __future__ import annotations

import math

from outeffhop_jax import data, models
from outeffhop_jax.train import config_lib, tasks
from outeffhop_jax.train.family import Family, no_summary, resolve


def _resolve_model_config(config, tokenizer=None):
  """image_size and num_channels from config.data; the variant's fields; then config.model."""
  del tokenizer
  derived = {"image_size": int(config.data.image_size),
             "num_channels": int(config.data.num_channels),
             **config_lib.variant_overrides(config.family, config.variant,
                                            int(config.data.seq_len))}
  model_cfg = resolve(config, models.ViTConfig, derived)
  for name in ("image_size", "num_channels"):
    if getattr(model_cfg, name) != config.data[name]:
      raise ValueError(f"config.model.{name} ({getattr(model_cfg, name)}) != "
                       f"config.data.{name} ({config.data[name]})")
  return model_cfg


def _source(config, split: str):
  d = config.data
  return data.image_source(d.dataset, split, data_dir=d.data_dir, image_key=d.image_key,
                           label_key=d.label_key)


def _dataset(config, tokenizer, split: str, *, train: bool, **pipeline):
  del tokenizer
  d = config.data
  return data.image_dataset(_source(config, split), image_size=int(d.image_size),
                            num_channels=int(d.num_channels),
                            augment=d.augment if train else "none", mean=d.mean, std=d.std,
                            train=train, **pipeline)


def _eval_batches_for_split(config, tokenizer, batch_size: int) -> int:
  del tokenizer
  return max(math.ceil(len(_source(config, config.data.eval_split)) / batch_size), 1)


def _classification(config, tokenizer=None):
  del tokenizer
  return tasks.Classification(image_size=int(config.data.image_size),
                              num_channels=int(config.data.num_channels),
                              label_smoothing=float(config.train.label_smoothing))


VIT = Family(
    name="vit", model_cls=models.ViT, config_cls=models.ViTConfig, task_name="classification",
    text=False, variants=config_lib.VARIANTS,
    positive_fields=("data.image_size", "data.num_channels"),
    dataset_prefixes=("embedded", "tfds:"), resolve_model_config=_resolve_model_config,
    make_task=_classification, dataset=_dataset, eval_batches_for_split=_eval_batches_for_split,
    summary=no_summary)
