"""Offline default data: real text and images that ship with the interpreter and installed packages.

Text: CPython's own standard library -- the pydoc help topics (`pydoc_data.topics`) and the source
files of the stdlib (~11 MB of English docstrings, comments and code); `doc_passages` cuts the
prose of the same sources into passages for embedding evaluation. Images: scikit-learn's
handwritten digits (1,797 8x8 grey images, 10 classes). Both are deterministic on one installation;
their exact size depends on the Python / scikit-learn version, so runs compare within one machine.
"""
from __future__ import annotations

import ast
import functools
import os
import re
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


# Passages (doc_passages): a larger held-out share, so "eval" has several hundred passages.
_PASSAGE_EVAL_PERCENT = 15
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(\"'])")


def _docstrings(source: str) -> list[str]:
  """Docstrings of a module and of its classes and functions (any depth), in source order."""
  try:
    tree = ast.parse(source)
  except (SyntaxError, ValueError):  # a few stdlib files are templates or Python-2 era
    return []
  kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
  nodes = sorted((n for n in ast.walk(tree) if isinstance(n, kinds)),
                 key=lambda n: getattr(n, "lineno", 0))
  return [d for d in (ast.get_docstring(n, clean=True) for n in nodes) if d]


def _prose_paragraphs(text: str) -> list[str]:
  """Blank-line separated paragraphs that read as English prose, whitespace collapsed.

  Dropped (they would make the set a code-retrieval one): doctest examples (">>>"), headings and
  signatures (< 6 words), and paragraphs where letters and spaces are < 80 % of the characters
  (code, tables).
  """
  out = []
  for para in re.split(r"\n\s*\n", text):
    para = " ".join(para.split())
    if ">>>" in para or len(para.split()) < 6:
      continue
    if sum(c.isalpha() or c == " " for c in para) < 0.8 * len(para):
      continue
    out.append(para)
  return out


def _pack(paragraphs: list[str], min_chars: int, max_chars: int) -> list[str]:
  """Greedy packing of consecutive paragraphs into passages of min_chars..max_chars characters;
  a paragraph longer than max_chars is cut at sentence ends (a longer sentence is dropped)."""
  pieces = []
  for para in paragraphs:
    pieces += [para] if len(para) <= max_chars else _SENTENCE_END.split(para)
  passages, current = [], ""
  for piece in pieces:
    if len(piece) > max_chars:
      continue
    if current and len(current) + 1 + len(piece) > max_chars:
      passages.append(current)
      current = ""
    current = f"{current} {piece}" if current else piece
  passages.append(current)
  return [p for p in passages if min_chars <= len(p) <= max_chars]


@functools.cache
def _all_passages(min_chars: int, max_chars: int) -> tuple[tuple[str, str], ...]:
  """(source name, passage) of the whole corpus, deduplicated (first occurrence kept)."""
  seen, out = set(), []
  for name, text in _all_text_documents():
    # A topic is one text; a source file gives one text per docstring (never packed together).
    texts = [text] if name.startswith("pydoc:") else _docstrings(text)
    for paras in map(_prose_paragraphs, texts):
      for p in _pack(paras, min_chars, max_chars):
        if p not in seen:
          seen.add(p)
          out.append((name, p))
  return tuple(out)


def doc_passages(split: str = "eval", *, min_chars: int = 200, max_chars: int = 1200) -> list[str]:
  """English prose passages of CPython's documentation, for offline embedding evaluation.

  Sources, in this fixed order: the pydoc help topics (`pydoc_data.topics`, sorted by topic), then
  the docstrings of every stdlib module, class and function (read with `ast` from the source files
  of `text_documents`' stdlib walk, never imported). Each source's text is cut into blank-line
  paragraphs, non-prose paragraphs are dropped (`_prose_paragraphs`), whitespace is collapsed and
  consecutive paragraphs of one docstring / topic are packed into passages of `min_chars` to
  `max_chars` characters. Identical passages are kept once (first occurrence), so the splits share
  no text. The split is by a hash of the source name (pydoc topic or stdlib file): "eval" holds
  15 % of the sources, "train" the rest, so no module contributes to both.

  On CPython 3.11.7 with the defaults: 2,026 "train" and 386 "eval" passages (mean ~540
  characters, ~135 BERT WordPiece tokens, 40 % longer than 128 tokens), 370 of the eval passages
  long enough for `retrieval_pairs`. Counts depend on the Python version.
  """
  if split not in ("train", "eval"):
    raise ValueError(f"doc_passages: split must be 'train' or 'eval', got {split!r}")
  if not 0 < min_chars <= max_chars:
    raise ValueError(f"doc_passages: need 0 < min_chars <= max_chars, got {min_chars}, {max_chars}")
  want_eval = split == "eval"
  return [p for name, p in _all_passages(min_chars, max_chars)
          if (zlib.crc32(name.encode()) % 100 < _PASSAGE_EVAL_PERCENT) == want_eval]


def retrieval_pairs(passages: list[str], *, n: int = 300, query_words: int = 12,
                    seed: int = 0) -> tuple[list[str], list[str]]:
  """(queries, documents): n query/document pairs cut from passages; pair i belongs together.

  query = the passage's first sentence when it has at most `query_words` words, else its first
  `query_words` words; document = the rest of the passage (so the query text is not in it).
  Passages whose rest would be shorter than 2 * query_words words are skipped. The n passages are
  drawn without replacement by `seed` and kept in corpus order; fewer than n are returned only
  when fewer passages qualify.
  """
  if n <= 0 or query_words <= 0:
    raise ValueError(f"retrieval_pairs: n and query_words must be positive, got {n}, {query_words}")
  pairs = []
  for p in passages:
    words = p.split()
    first = _SENTENCE_END.split(p, maxsplit=1)[0].split()
    k = len(first) if len(first) <= query_words else query_words
    if len(words) - k >= 2 * query_words:
      pairs.append((" ".join(words[:k]), " ".join(words[k:])))
  if len(pairs) > n:
    keep = np.sort(np.random.default_rng(seed).choice(len(pairs), size=n, replace=False))
    pairs = [pairs[i] for i in keep]
  return [q for q, _ in pairs], [d for _, d in pairs]


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
