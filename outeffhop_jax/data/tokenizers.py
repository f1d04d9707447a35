"""Tokenizers: byte-level by default (nothing to download), a HF `tokenizers` file as an option.

Both expose the same small surface: `encode(text) -> int32 array`, `decode(ids)`, `vocab_size` and
the special ids `pad_id`, `bos_id`, `eos_id`, `mask_id` that the pipelines and tasks use.
"""
from __future__ import annotations

import numpy as np


class ByteTokenizer:
  """UTF-8 bytes shifted past four special tokens: PAD=0, BOS=1, EOS=2, MASK=3, byte b -> b + 4."""

  pad_id, bos_id, eos_id, mask_id = 0, 1, 2, 3
  num_special = 4
  vocab_size = 256 + num_special

  def encode(self, text: str | bytes) -> np.ndarray:
    data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
    return np.frombuffer(data, dtype=np.uint8).astype(np.int32) + self.num_special

  def decode(self, ids) -> str:
    ids = np.asarray(ids)
    data = (ids[ids >= self.num_special] - self.num_special).astype(np.uint8).tobytes()
    return data.decode("utf-8", errors="replace")


# Names that common tokenizer.json files use for their special tokens, first match wins.
_SPECIAL_NAMES = {
    "pad_id": ("<pad>", "[PAD]", "<|padding|>"),
    "bos_id": ("<s>", "[CLS]", "<|begin_of_text|>", "<|endoftext|>", "</s>"),
    "eos_id": ("</s>", "[SEP]", "<|end_of_text|>", "<|endoftext|>"),
    "mask_id": ("<mask>", "[MASK]"),
}


class HFTokenizer:
  """A `tokenizers.Tokenizer` loaded from a local tokenizer.json (no hub access)."""

  def __init__(self, path: str):
    import tokenizers  # Optional dependency, only needed for this path.

    self._tok = tokenizers.Tokenizer.from_file(path)
    # The pipelines add BOS/EOS themselves; the file's post-processor would add them twice.
    self._tok.no_padding()
    self._tok.no_truncation()
    self.vocab_size = self._tok.get_vocab_size(with_added_tokens=True)
    for attr, names in _SPECIAL_NAMES.items():
      ids = [self._tok.token_to_id(n) for n in names]
      ids = [i for i in ids if i is not None]
      setattr(self, attr, ids[0] if ids else None)
    if self.bos_id is None or self.eos_id is None:
      raise ValueError(f"tokenizer {path!r} has no recognisable BOS/EOS token ({_SPECIAL_NAMES})")
    if self.pad_id is None:
      self.pad_id = self.eos_id

  def encode(self, text: str | bytes) -> np.ndarray:
    if isinstance(text, bytes):
      text = text.decode("utf-8", errors="replace")
    return np.asarray(self._tok.encode(text, add_special_tokens=False).ids, dtype=np.int32)

  def decode(self, ids) -> str:
    return self._tok.decode([int(i) for i in np.asarray(ids)])

  def encode_batch(self, texts, *, max_len: int, add_special_tokens: bool = True):
    """Model inputs as the checkpoint's own pipeline builds them (e.g. BERT's [CLS] ... [SEP]).

    Texts are truncated to `max_len` tokens (special tokens included) and right-padded with
    `pad_id` to the longest row. Returns (ids_BT int32, attention_mask_BT int32; 1 = real token).
    """
    if isinstance(texts, str) or not len(texts):
      raise ValueError("encode_batch: texts must be a non-empty sequence of strings")
    if max_len < 2:
      raise ValueError(f"encode_batch: max_len must be >= 2, got {max_len}")
    # A copy, so the truncation/padding set here never leaks into `encode` (used by the pipelines).
    tok = self._tok.__class__.from_str(self._tok.to_str())
    tok.enable_truncation(max_length=max_len)
    tok.enable_padding(pad_id=self.pad_id, pad_token=self._tok.id_to_token(self.pad_id))
    out = tok.encode_batch(list(texts), add_special_tokens=add_special_tokens)
    ids = np.asarray([e.ids for e in out], dtype=np.int32)
    mask = np.asarray([e.attention_mask for e in out], dtype=np.int32)
    return ids, mask


def get_tokenizer(name: str = "byte"):
  """"byte" or a path to a tokenizer.json."""
  if name in ("byte", "", None):
    return ByteTokenizer()
  return HFTokenizer(name)
