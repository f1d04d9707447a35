"""Synthetic text in which attention heads have nothing to do most of the time: bigram-backcopy.

A sequence x_1, x_2, ... over `vocab` symbols follows a fixed bigram chain, except after a trigger
symbol (one of the first `num_triggers` symbols), where the next symbol copies the one before the
trigger:

    x_{t+1} = x_{t-1}                 if x_t < num_triggers   (back-copy)
    x_{t+1} ~ P[x_t, :]               otherwise                (bigram)

P's rows are drawn once from Dirichlet(alpha) with a fixed seed (the same chain for every split),
the trigger rows included, so triggers occur at their chain's rate. Predicting a bigram step needs
only the current token; a back-copy step needs one attention head to look one token back. That head
is idle at every non-trigger position, which is the situation in which softmax heads learn to park
their attention on the first token (an attention sink) while adding almost nothing to the residual.

Documents are `bytes` (symbol s is byte s), so the byte tokenizer reads them unchanged.
"""
from __future__ import annotations

import functools

import numpy as np

_SPLIT_SEEDS = {"train": 1, "validation": 2, "test": 3}


@functools.lru_cache(maxsize=8)
def bigram_backcopy(split: str, *, num_docs: int | None = None, doc_len: int = 4096,
                    vocab: int = 64, num_triggers: int = 3, alpha: float = 0.1,
                    chain_seed: int = 0) -> tuple[bytes, ...]:
  """Documents of one split: `num_docs` (default 1024 for train, 64 otherwise) x `doc_len` symbols.

  Splits differ in their sampling seed only; the chain P (and so the task) is shared.
  """
  if split not in _SPLIT_SEEDS:
    raise ValueError(f"split must be one of {sorted(_SPLIT_SEEDS)}, got {split!r}")
  if not 2 <= vocab <= 256:
    raise ValueError(f"vocab must be in [2, 256] (one byte per symbol), got {vocab}")
  if not 1 <= num_triggers < vocab:
    raise ValueError(f"num_triggers must be in [1, vocab), got {num_triggers}")
  if doc_len < 2:
    raise ValueError(f"doc_len must be >= 2, got {doc_len}")
  n = (1024 if split == "train" else 64) if num_docs is None else int(num_docs)
  if n < 1:
    raise ValueError(f"num_docs must be >= 1, got {num_docs}")
  cum_P = np.cumsum(np.random.default_rng(chain_seed).dirichlet(np.full(vocab, alpha), vocab), 1)
  rng = np.random.default_rng([chain_seed, _SPLIT_SEEDS[split]])
  x_NL = np.empty((n, doc_len), np.uint8)
  x_NL[:, 0] = rng.integers(num_triggers, vocab, n)  # start on a bigram step
  u_NL = rng.random((n, doc_len))
  for t in range(1, doc_len):
    cur = x_NL[:, t - 1]
    nxt = np.minimum((cum_P[cur] < u_NL[:, t, None]).sum(1), vocab - 1)
    if t >= 2:
      nxt = np.where(cur < num_triggers, x_NL[:, t - 2], nxt)
    x_NL[:, t] = nxt
  return tuple(row.tobytes() for row in x_NL)
