"""Config -> tokenizer, model config and grain pipelines (the glue between `data` and the loop).

What differs between families (model config, datasets, eval split size) is asked of the family
of config.family (`families.get`).
"""
from __future__ import annotations

import jax

from outeffhop_jax import data
from outeffhop_jax.train import families


def is_text(config) -> bool:
  """Batches of config's family are rows of tokens (tokenizer, tokens/s)."""
  return families.get(config.family).text


def tokenizer_for(config):
  return data.get_tokenizer(config.data.tokenizer) if is_text(config) else None


def resolved_model_config(config, tokenizer=None):
  """`XConfig.from_preset(model_preset, **fields)`: what the data dictates, then the variant's
  fields, then the fields set explicitly in config.model (which win), checked against the data.

  Text: vocab_size = tokenizer vocab rounded up to data.pad_vocab_to, max_len = the sequence
  length the model reads, pad_token_id = the tokenizer's. Images: image_size and num_channels.
  Forecasting: n_series from the data. compute_dtype other than float32 sets the model's compute
  `dtype` (parameters stay float32). The variant sets normalizer / gate / gate_init
  (`config_lib.variant_overrides`; clipped softmax's gamma from data.seq_len).
  """
  return families.get(config.family).resolve_model_config(config, tokenizer)


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
  return families.get(config.family).eval_batches_for_split(config, tokenizer_for(config),
                                                            eval_batch_size(config))


def _dataset(config, tokenizer, split: str, *, train: bool, batch_size: int):
  kwargs = _pipeline_kwargs(config, train=train, batch_size=batch_size)
  return families.get(config.family).dataset(config, tokenizer, split, **kwargs)


def seq_len_for_shapes(config) -> int:
  """Length of the `tokens` rows a batch carries (task.batch_shapes' seq_len argument)."""
  return int(config.data.seq_len)
