"""Config -> tokenizer, model config and grain pipelines (the glue between `data` and the loop)."""
from __future__ import annotations

import dataclasses
import math

import jax

from outeffhop_jax import data
from outeffhop_jax.train import config_lib, tasks


def is_text(config) -> bool:
  return config.family in ("opt", "bert")


def tokenizer_for(config):
  return data.get_tokenizer(config.data.tokenizer) if is_text(config) else None


def resolved_model_config(config, tokenizer=None):
  """`XConfig.from_preset(model_preset, **model)` with the fields the data dictates filled in.

  Text: vocab_size = tokenizer vocab rounded up to data.pad_vocab_to, max_len = the sequence
  length the model reads, pad_token_id = the tokenizer's. Images: image_size and num_channels.
  compute_dtype other than float32 sets the model's compute `dtype` (parameters stay float32).
  The variant sets normalizer / gate / gate_init (`config_lib.variant_overrides`; clipped
  softmax's gamma from data.seq_len). Values set explicitly in config.model win, and are then
  checked against the data.
  """
  if config.family == "stanhop":
    return _forecasting().resolved_model_config(config)
  auto = {}
  if is_text(config):
    multiple = max(int(config.data.pad_vocab_to or 1), 1)
    auto["vocab_size"] = math.ceil(tokenizer.vocab_size / multiple) * multiple
    auto["max_len"] = int(config.data.seq_len)
    auto["pad_token_id"] = int(tokenizer.pad_id)
  else:
    auto["image_size"] = int(config.data.image_size)
    auto["num_channels"] = int(config.data.num_channels)
  if config.train.compute_dtype not in (None, "float32"):
    auto["dtype"] = config.train.compute_dtype
  _, config_cls = tasks._classes(config.family)
  fields = {f.name for f in dataclasses.fields(config_cls)}
  overrides = {k: v for k, v in auto.items() if k in fields}
  # The variant's fields, resolved here (after command-line overrides of variant and seq_len).
  overrides.update(config_lib.variant_overrides(config.family, config.variant,
                                                int(config.data.seq_len)))
  overrides.update(config_lib.explicit_model_fields(config))  # explicit model fields win
  unknown = sorted(set(config.model) - fields)
  if unknown:
    raise ValueError(f"config.model: {config_cls.__name__} has no field(s) {unknown}; "
                     f"fields: {sorted(fields)}")
  try:
    model_cfg = config_cls.from_preset(config.model_preset, **overrides)
  except ValueError as e:
    raise ValueError(f"config.model / config.model_preset: {e}") from None
  _check_against_data(config, model_cfg, tokenizer)
  return model_cfg


def _check_against_data(config, model_cfg, tokenizer):
  if is_text(config):
    if config.data.seq_len > model_cfg.max_len:
      raise ValueError(f"config.data.seq_len ({config.data.seq_len}) is longer than the model's "
                       f"positions (config.model.max_len = {model_cfg.max_len})")
    if model_cfg.vocab_size < tokenizer.vocab_size:
      raise ValueError(f"config.model.vocab_size ({model_cfg.vocab_size}) is smaller than the "
                       f"tokenizer's vocabulary ({tokenizer.vocab_size})")
  else:
    for name in ("image_size", "num_channels"):
      if getattr(model_cfg, name) != config.data[name]:
        raise ValueError(f"config.model.{name} ({getattr(model_cfg, name)}) != "
                         f"config.data.{name} ({config.data[name]})")


def local_batch_size(global_batch: int) -> int:
  n = jax.process_count()
  if global_batch % n:
    raise ValueError(f"config.train.global_batch_size ({global_batch}) is not divisible by the "
                     f"{n} processes")
  return global_batch // n


def _pipeline_kwargs(config, *, train: bool, batch_size: int) -> dict:
  return dict(batch_size=local_batch_size(batch_size), train=train,
              seed=int(config.data.shuffle_seed), process_index=jax.process_index(),
              process_count=jax.process_count(), prefetch=int(config.data.prefetch))


def train_dataset(config, tokenizer):
  """The (infinite, shuffled) training IterDataset of this host."""
  return _dataset(config, tokenizer, config.data.train_split, train=True,
                  batch_size=config.train.global_batch_size)


def eval_dataset(config, tokenizer):
  """One deterministic pass over the evaluation split, this host's share."""
  return _dataset(config, tokenizer, config.data.eval_split, train=False,
                  batch_size=eval_batch_size(config))


def eval_batch_size(config) -> int:
  return int(config.train.eval_batch_size or config.train.global_batch_size)


def num_eval_batches(config) -> int:
  """Same on every host: the configured count, or (-1) enough batches to cover the split."""
  n = int(config.train.num_eval_batches)
  if n >= 0:
    return n
  if config.family == "stanhop":
    return _forecasting().num_eval_batches(config, eval_batch_size(config))
  if is_text(config):
    source = data.text_source(config.data.dataset, config.data.eval_split,
                              data_dir=config.data.data_dir, text_key=config.data.text_key)
    tok = tokenizer_for(config)
    total = sum(len(tok.encode(t)) + 1 for t in source)  # EOS per document
    rows = total // config.data.seq_len
  else:
    rows = len(data.image_source(config.data.dataset, config.data.eval_split,
                                 data_dir=config.data.data_dir))
  return max(math.ceil(rows / eval_batch_size(config)), 1)


def _dataset(config, tokenizer, split: str, *, train: bool, batch_size: int):
  d = config.data
  kwargs = _pipeline_kwargs(config, train=train, batch_size=batch_size)
  if config.family == "stanhop":
    return _forecasting().dataset(config, split, **kwargs)
  if config.family == "opt":
    source = data.text_source(d.dataset, split, data_dir=d.data_dir, text_key=d.text_key)
    return data.text_dataset(source, tokenizer, seq_len=int(d.seq_len), add_bos=True, **kwargs)
  if config.family == "bert":
    # Rows of seq_len tokens: BOS + seq_len - 1 text tokens (no next-token shift for MLM).
    source = data.text_source(d.dataset, split, data_dir=d.data_dir, text_key=d.text_key)
    return data.text_dataset(source, tokenizer, seq_len=int(d.seq_len) - 1, add_bos=True, **kwargs)
  source = data.image_source(d.dataset, split, data_dir=d.data_dir, image_key=d.image_key,
                             label_key=d.label_key)
  return data.image_dataset(source, image_size=int(d.image_size), num_channels=int(d.num_channels),
                            augment=d.augment if train else "none", mean=d.mean, std=d.std,
                            **kwargs)


def seq_len_for_shapes(config) -> int:
  """Length of the `tokens` rows a batch carries (task.batch_shapes' seq_len argument)."""
  return int(config.data.seq_len)


def _forecasting():
  from outeffhop_jax.train import forecasting  # imports this module's neighbours lazily
  return forecasting
