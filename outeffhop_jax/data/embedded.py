"""Offline default data: real text and images that ship with the interpreter and installed packages.

Text: CPython's own standard library -- the pydoc help topics (`pydoc_data.topics`) and the source
files of the stdlib (~11 MB of English docstrings, comments and code). Images: scikit-learn's
handwritten digits (1,797 8x8 grey images, 10 classes). Both are deterministic on one installation;
their exact size depends on the Python / scikit-learn version, so runs compare within one machine.
"""
from __future__ import annotations

import functools
import os
import sysconfig
import zlib

import numpy as np

# Stdlib folders left out: tests (huge, repetitive), GUI demos, vendored or generated code, and
# pydoc_data, whose topics are added once below instead of as Python source.
_SKIP_DIRS = frozenset({"site-packages", "dist-packages", "test", "tests", "idlelib", "lib2to3",
                        "turtledemo", "ensurepip", "pydoc_data", "__pycache__"})
_EVAL_PERCENT = 2  # Share of documents held out for evaluation, chosen by a hash of the name.


def _stdlib_sources() -> list[tuple[str, str]]:
  root = sysconfig.get_paths()["stdlib"]
  docs = []
  for dirpath, dirnames, filenames in os.walk(root):
    dirnames[:] = sorted(d for d in dirnames
                         if d not in _SKIP_DIRS and not d.startswith("config-"))
    for name in sorted(filenames):
      if name.endswith(".py"):
        path = os.path.join(dirpath, name)
        with open(path, encoding="utf-8", errors="replace") as f:
          docs.append((os.path.relpath(path, root), f.read()))
  return docs


@functools.cache
def _all_text_documents() -> tuple[tuple[str, str], ...]:
  import pydoc_data.topics

  topics = pydoc_data.topics.topics
  docs = [(f"pydoc:{k}", topics[k]) for k in sorted(topics)]
  docs += _stdlib_sources()
  return tuple(docs)


def _is_eval(name: str) -> bool:
  return zlib.crc32(name.encode()) % 100 < _EVAL_PERCENT


def text_documents(split: str = "train") -> list[str]:
  """Documents of the embedded text corpus; split "train" or "validation" (disjoint by name)."""
  if split not in ("train", "validation", "test"):
    raise ValueError(f"unknown split {split!r} for the embedded text corpus")
  want_eval = split != "train"
  return [text for name, text in _all_text_documents() if _is_eval(name) == want_eval]


_DIGITS_EVAL = 297  # sklearn's digits: 1,797 images; the last 297 of a fixed permutation are held out.


def digits(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
  """scikit-learn digits as (images uint8 [N, 8, 8, 1] in 0..255, labels int32 [N])."""
  from sklearn.datasets import load_digits  # Ships the data inside the package: no download.

  bunch = load_digits()
  images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
  labels = bunch.target.astype(np.int32)
  order = np.random.RandomState(0).permutation(len(labels))
  if split == "train":
    idx = order[:-_DIGITS_EVAL]
  elif split in ("validation", "test"):
    idx = order[-_DIGITS_EVAL:]
  else:
    raise ValueError(f"unknown split {split!r} for the embedded digits")
  return images[idx], labels[idx]
