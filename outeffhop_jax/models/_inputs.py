"""Checks of the text models' inputs: rank, dtype and shapes always; token ids in [0, vocab) and
0/1 attention masks when the values are concrete.

Each raises ValueError naming the (Hugging Face) argument before any compute. The value checks run
in eager calls, where the values are concrete. Under `jax.jit` (the training and evaluation steps) the values are tracers and
are not checked; there the lookup is `jnp.take(table, ids, axis=0)` (flax's `nnx.Embed`), so
  - an id in [vocab, inf) or below -vocab gives a row of NaN (take's "fill" mode), hence NaN logits;
  - an id in [-vocab, -1] wraps as in Python indexing: -1 reads the last row (id vocab - 1);
  - an attention mask follows the non-zero rule (any non-zero value = real token), so a 2 counts as
    1 and an additive 0 / -inf mask is inverted; OPT's positions use the same 0/1 view.
Check data once outside jit (e.g. `check_token_ids(batch, vocab_size, "input_ids")`) when its
source is not trusted.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

# The models' argument names, used in the messages (one place to change if they are renamed).
IDS, MASK, TOKEN_TYPES = "input_ids", "attention_mask", "token_type_ids"


def _concrete(x):
  """NumPy values of x, or None under tracing (jit / grad / vmap) or for None."""
  if x is None or isinstance(x, jax.core.Tracer):
    return None
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    return None  # a multi-host global array: this process cannot read all of it
  return np.asarray(jax.device_get(x))


def check_token_ids(ids, vocab_size: int, name: str = IDS, size_name: str = "vocab_size") -> None:
  """Raises ValueError unless every concrete id is an integer in [0, vocab_size)."""
  values = _concrete(ids)
  if values is None or values.size == 0:
    return
  lo, hi = int(values.min()), int(values.max())
  if lo < 0 or hi >= vocab_size:
    bad = lo if lo < 0 else hi
    raise ValueError(f"{name} must hold ids in [0, {size_name}={vocab_size}), got {bad}"
                     f"{' (a negative id would silently read the last rows)' if bad < 0 else ''}")


def check_attention_mask(mask, name: str = MASK) -> None:
  """Raises ValueError unless the concrete mask is boolean or holds only 0 and 1 (1 = real token).

  Model masks are key-padding masks [batch, seq]: anything else (a 2, which would shift OPT's
  positions; an additive 0 / -inf mask, which would be inverted) is refused with how to convert it.
  """
  if mask is None:
    return
  dtype = jnp.asarray(mask).dtype if not hasattr(mask, "dtype") else mask.dtype
  if dtype == jnp.bool_:
    return
  if not (jnp.issubdtype(dtype, jnp.integer) or jnp.issubdtype(dtype, jnp.floating)):
    raise ValueError(f"{name} must be boolean or 0/1 (1 = real token), got dtype {dtype}")
  values = _concrete(mask)
  if values is None or values.size == 0:
    return
  bad = values[(values != 0) & (values != 1)]
  if bad.size:
    hint = (" It looks like an additive mask (0 / -inf): convert with `mask = additive_mask == 0`."
            if (~np.isfinite(bad)).any() or (bad < 0).any() else
            " Use `mask != 0` if every non-zero value means a real token.")
    raise ValueError(f"{name} must be boolean or hold only 0 and 1 (1 = real token), got the "
                     f"value {bad.ravel()[0].item()!r}.{hint}")


def check_shapes(input_ids, attention_mask=None, token_type_ids=None, *, max_len=None) -> None:
  """input_ids rank 2 ([batch, seq]) and integer, at most `max_len` tokens; the mask and token
  types of its shape."""
  shape = tuple(getattr(input_ids, "shape", ()))
  if len(shape) != 2:
    raise ValueError(f"{IDS} must have rank 2 ([batch, seq]), got shape {shape}")
  if not jnp.issubdtype(jnp.asarray(input_ids).dtype, jnp.integer):
    raise ValueError(f"{IDS} must be integer token ids, got dtype {input_ids.dtype}")
  if max_len is not None and shape[1] > max_len:
    raise ValueError(f"{IDS} has {shape[1]} tokens, more than the model's max_len {max_len}")
  for name, x in ((MASK, attention_mask), (TOKEN_TYPES, token_type_ids)):
    if x is not None and tuple(x.shape) != shape:
      raise ValueError(f"{name} must have the shape of {IDS} {shape}, got {tuple(x.shape)}")


def check_text_inputs(config, input_ids, attention_mask=None, token_type_ids=None) -> None:
  """All checks of a text model's __call__ (OPT, BERT): shapes (`check_shapes`, at most
  `config.max_len` tokens), then ids against `config.vocab_size`, token types against
  `config.type_vocab_size`, the mask 0/1."""
  check_shapes(input_ids, attention_mask, token_type_ids, max_len=config.max_len)
  check_token_ids(input_ids, config.vocab_size, IDS)
  check_attention_mask(attention_mask, MASK)
  if token_type_ids is not None:
    check_token_ids(token_type_ids, config.type_vocab_size, TOKEN_TYPES, "type_vocab_size")
