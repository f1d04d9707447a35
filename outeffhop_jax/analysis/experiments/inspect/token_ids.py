"""Text -> token id rows for `inspect` (with or without the folder's tokenizer.json), and ids -> names."""
from __future__ import annotations

import numpy as np


class ByteIds:
  """Text -> ids without a tokenizer.json: [start] + (4 + byte mod (V - 4)) per UTF-8 byte."""

  def __init__(self, vocab_size: int, start: int | None):
    self.vocab_size, self.start = int(vocab_size), start

  def rows(self, texts, T):
    out = []
    for t in texts:
      ids = ([self.start] if self.start is not None else []) + [
          4 + b % (self.vocab_size - 4) for b in t.encode("utf-8")]
      if len(ids) >= T:
        out.append(ids[:T])
    return np.asarray(out, np.int32).reshape(-1, T)

  def name(self, i: int) -> str:
    if i == self.start:
      return f"<start id {i}>"
    b = i - 4
    return repr(chr(b)) if 32 <= b < 127 else f"id {i}"


class TokenizerIds:
  """Text -> ids through the folder's tokenizer.json: only rows of exactly T real tokens."""

  def __init__(self, tok):
    self.tok = tok

  def rows(self, texts, T):
    ids, mask = self.tok.encode_batch(list(texts), max_len=T)
    if ids.shape[1] < T:
      return np.zeros((0, T), np.int32)
    return ids[mask.sum(axis=1) == T]

  def name(self, i: int) -> str:
    inner = getattr(self.tok, "_tok", None)
    name = inner.id_to_token(i) if inner is not None else None
    return name or self.tok.decode([i]) or f"id {i}"
