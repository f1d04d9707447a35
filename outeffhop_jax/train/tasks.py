"""The three training tasks: causal LM (OPT), masked LM (BERT) and image classification (ViT).

(Forecasting's task lives with its family in forecasting.py; `families` says which family uses
which task.) A task turns (model, batch, rng) into summed statistics:
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
