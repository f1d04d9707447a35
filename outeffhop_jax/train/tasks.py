"""The three training tasks: causal LM (OPT), masked LM (BERT) and image classification (ViT).

A task builds its model from the config and turns (model, batch, rng) into summed statistics:
`loss_sum`, `weight` (number of predicted tokens / examples) and `correct`. Sums rather than means
so that evaluation can add batches (and padding) exactly; the train step divides.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

# family -> (model class, config class, task name), resolved lazily from outeffhop_jax.models.
FAMILIES = {
    "opt": ("OPT", "OPTConfig", "causal_lm"),
    "bert": ("BERT", "BERTConfig", "masked_lm"),
    "vit": ("ViT", "ViTConfig", "classification"),
    "stanhop": ("STanHopNet", "STanHopConfig", "forecasting"),  # train/forecasting.py
}


def _classes(family: str):
  if family not in FAMILIES:
    raise ValueError(f"config.family: unknown {family!r} (one of {sorted(FAMILIES)})")
  from outeffhop_jax import models

  model_name, config_name, _ = FAMILIES[family]
  return getattr(models, model_name), getattr(models, config_name)


def build_model(family: str, model_cfg, seed: int) -> nnx.Module:
  """The model for `family` from its frozen config; dropout draws from its own stream."""
  model_cls, _ = _classes(family)
  return model_cls(model_cfg, rngs=nnx.Rngs(seed, params=seed, dropout=seed + 1))


def _token_stats(logits, targets, weights) -> dict[str, jax.Array]:
  logits = logits.astype(jnp.float32)
  nll = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
  correct = (jnp.argmax(logits, -1) == targets).astype(jnp.float32)
  return {"loss_sum": jnp.sum(nll * weights), "weight": jnp.sum(weights),
          "correct": jnp.sum(correct * weights)}


@dataclasses.dataclass(frozen=True)
class CausalLM:
  """Next-token prediction on rows [BOS, t_1 .. t_L]: reads tokens[:, :-1], predicts tokens[:, 1:]."""
  pad_id: int = 0
  name: str = "causal_lm"

  def batch_shapes(self, batch_size: int, seq_len: int) -> dict[str, Any]:
    return {"tokens": ((batch_size, seq_len + 1), np.int32),
            "example_mask": ((batch_size,), np.float32)}

  def inputs(self, batch, rng=None):
    """What the model reads: tokens[:, :-1] (starts with BOS)."""
    del rng
    return batch["tokens"][:, :-1]

  def stats(self, model, batch, rng, *, deterministic: bool):
    del rng
    tokens = batch["tokens"]
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    weights = batch["example_mask"][:, None] * (targets != self.pad_id)
    logits = model(inputs, deterministic=deterministic)
    return _token_stats(logits, targets, weights)


@dataclasses.dataclass(frozen=True)
class MaskedLM:
  """BERT masking on device: 15 % of the non-special tokens are predicted; of those 80 % become
  MASK, 10 % a random token, 10 % stay. The rng comes from (seed, step), so a resumed run masks
  exactly as the uninterrupted one would."""
  mask_id: int
  special_ids: tuple[int, ...]
  vocab_size: int
  random_low: int = 0  # random replacements are drawn from [random_low, vocab_size)
  probability: float = 0.15
  name: str = "masked_lm"

  def batch_shapes(self, batch_size: int, seq_len: int) -> dict[str, Any]:
    return {"tokens": ((batch_size, seq_len), np.int32),
            "example_mask": ((batch_size,), np.float32)}

  def mask(self, tokens, rng):
    k_select, k_kind, k_random = jax.random.split(rng, 3)
    maskable = jnp.all(tokens[..., None] != jnp.asarray(self.special_ids), axis=-1)
    selected = (jax.random.uniform(k_select, tokens.shape) < self.probability) & maskable
    kind = jax.random.uniform(k_kind, tokens.shape)
    random_tokens = jax.random.randint(k_random, tokens.shape, self.random_low, self.vocab_size)
    inputs = jnp.where(selected & (kind < 0.8), self.mask_id, tokens)
    inputs = jnp.where(selected & (kind >= 0.8) & (kind < 0.9), random_tokens, inputs)
    return inputs.astype(tokens.dtype), selected

  def inputs(self, batch, rng):
    """What the model reads: the masked tokens."""
    return self.mask(batch["tokens"], rng)[0]

  def stats(self, model, batch, rng, *, deterministic: bool):
    tokens = batch["tokens"]
    inputs, selected = self.mask(tokens, rng)
    weights = batch["example_mask"][:, None] * selected
    logits = model(inputs, deterministic=deterministic)
    return _token_stats(logits, tokens, weights)


@dataclasses.dataclass(frozen=True)
class Classification:
  image_size: int
  num_channels: int
  label_smoothing: float = 0.0
  name: str = "classification"

  def batch_shapes(self, batch_size: int, seq_len: int = 0) -> dict[str, Any]:
    del seq_len
    return {"images": ((batch_size, self.image_size, self.image_size, self.num_channels),
                       np.float32),
            "labels": ((batch_size,), np.int32),
            "example_mask": ((batch_size,), np.float32)}

  def inputs(self, batch, rng=None):
    del rng
    return batch["images"]

  def stats(self, model, batch, rng, *, deterministic: bool):
    del rng
    logits = model(batch["images"], deterministic=deterministic).astype(jnp.float32)
    labels, weights = batch["labels"], batch["example_mask"]
    num_classes = logits.shape[-1]
    targets = optax.smooth_labels(jax.nn.one_hot(labels, num_classes), self.label_smoothing)
    nll = optax.softmax_cross_entropy(logits, targets)
    correct = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
    return {"loss_sum": jnp.sum(nll * weights), "weight": jnp.sum(weights),
            "correct": jnp.sum(correct * weights)}


def make_task(config, tokenizer=None):
  """The task object for config.family (tokenizer: for the LM tasks' special ids)."""
  kind = FAMILIES[config.family][2] if config.family in FAMILIES else None
  if kind == "forecasting":
    from outeffhop_jax.train import forecasting
    return forecasting.make_task(config)
  if kind == "causal_lm":
    return CausalLM(pad_id=tokenizer.pad_id)
  if kind == "masked_lm":
    specials = tuple(sorted({i for i in (tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id,
                                         tokenizer.mask_id) if i is not None}))
    if tokenizer.mask_id is None:
      raise ValueError("config.data.tokenizer: masked LM needs a tokenizer with a mask token")
    return MaskedLM(mask_id=tokenizer.mask_id, special_ids=specials,
                    vocab_size=tokenizer.vocab_size,
                    random_low=getattr(tokenizer, "num_special", 0),
                    probability=float(config.data.mlm_probability))
  if kind == "classification":
    return Classification(image_size=int(config.data.image_size),
                          num_channels=int(config.data.num_channels),
                          label_smoothing=float(config.train.label_smoothing))
  raise ValueError(f"config.family: unknown {config.family!r} (one of {sorted(FAMILIES)})")

