"""The text families: OPT (causal LM) and BERT (masked LM) on tokenized documents."""
from __future__ import annotations

import math

from outeffhop_jax import data, models
from outeffhop_jax.train import config_lib, tasks
from outeffhop_jax.train.family import Family, resolve

TEXT_DATASETS = ("embedded", "bigram_backcopy", "tfds:")


def _resolver(config_cls):
  def resolve_model_config(config, tokenizer):
    """vocab_size = tokenizer vocab rounded up to data.pad_vocab_to, max_len = data.seq_len,
    pad_token_id = the tokenizer's; the variant's fields; then config.model; checked vs the data."""
    multiple = max(int(config.data.pad_vocab_to or 1), 1)
    derived = {"vocab_size": math.ceil(tokenizer.vocab_size / multiple) * multiple,
               "max_len": int(config.data.seq_len), "pad_token_id": int(tokenizer.pad_id),
               **config_lib.variant_overrides(config.family, config.variant,
                                              int(config.data.seq_len))}
    model_cfg = resolve(config, config_cls, derived)
    if config.data.seq_len > model_cfg.max_len:
      raise ValueError(f"config.data.seq_len ({config.data.seq_len}) is longer than the model's "
                       f"positions (config.model.max_len = {model_cfg.max_len})")
    if model_cfg.vocab_size < tokenizer.vocab_size:
      raise ValueError(f"config.model.vocab_size ({model_cfg.vocab_size}) is smaller than the "
                       f"tokenizer's vocabulary ({tokenizer.vocab_size})")
    return model_cfg
  return resolve_model_config


def _source(config, split: str):
  d = config.data
  return data.text_source(d.dataset, split, data_dir=d.data_dir, text_key=d.text_key)


def _dataset(row_len):
  """Rows of row_len(seq_len) tokens after BOS, batched (pipeline: seed, hosts, prefetch)."""
  def dataset(config, tokenizer, split: str, **pipeline):
    return data.text_dataset(_source(config, split), tokenizer,
                             seq_len=row_len(int(config.data.seq_len)), add_bos=True, **pipeline)
  return dataset


def _eval_batches_for_split(config, tokenizer, batch_size: int) -> int:
  total = sum(len(tokenizer.encode(t)) + 1 for t in _source(config, config.data.eval_split))
  rows = total // config.data.seq_len  # EOS per document, rows of seq_len tokens
  return max(math.ceil(rows / batch_size), 1)


def _perplexity(out: dict) -> dict:
  return {"perplexity": math.exp(min(out["loss"], 700.0))}


def _causal_lm(config, tokenizer):
  del config
  return tasks.CausalLM(pad_id=tokenizer.pad_id)


def _masked_lm(config, tokenizer):
  if tokenizer.mask_id is None:
    raise ValueError("config.data.tokenizer: masked LM needs a tokenizer with a mask token")
  specials = tuple(sorted({i for i in (tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id,
                                       tokenizer.mask_id) if i is not None}))
  return tasks.MaskedLM(mask_id=tokenizer.mask_id, special_ids=specials,
                        vocab_size=tokenizer.vocab_size,
                        random_low=getattr(tokenizer, "num_special", 0),
                        probability=float(config.data.mlm_probability))


OPT = Family(
    name="opt", model_cls=models.OPT, config_cls=models.OPTConfig, task_name="causal_lm",
    text=True, variants=config_lib.VARIANTS, positive_fields=("data.seq_len",),
    dataset_prefixes=TEXT_DATASETS, resolve_model_config=_resolver(models.OPTConfig),
    make_task=_causal_lm, dataset=_dataset(lambda seq_len: seq_len),
    eval_batches_for_split=_eval_batches_for_split, summary=_perplexity)

# BERT rows: BOS + seq_len - 1 text tokens (no next-token shift for MLM).
BERT = Family(
    name="bert", model_cls=models.BERT, config_cls=models.BERTConfig, task_name="masked_lm",
    text=True, variants=config_lib.VARIANTS, positive_fields=("data.seq_len",),
    dataset_prefixes=TEXT_DATASETS, resolve_model_config=_resolver(models.BERTConfig),
    make_task=_masked_lm, dataset=_dataset(lambda seq_len: seq_len - 1),
    eval_batches_for_split=_eval_batches_for_split, summary=_perplexity)
