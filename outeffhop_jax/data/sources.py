"""Random-access record sources: the embedded corpus or a prepared tensorflow-datasets dataset.

`config.data.dataset` names the source: "embedded", "bigram_backcopy" (synthetic, text only;
`synthetic.py`) or "tfds:NAME" (e.g. "tfds:lm1b", "tfds:c4/en",
"tfds:imagenet2012", "tfds:cifar10"). tfds datasets must have been prepared beforehand with the
array_record file format (`tfds build --file_format=array_record` or a builder's
`download_and_prepare(file_format="array_record")`); `tfds.data_source` then reads them by index
without TensorFlow. Nothing here downloads.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from outeffhop_jax.data import embedded, synthetic


class ArraySource:
  """A list-like source over aligned arrays: record i is {key: array[i]}."""

  def __init__(self, **arrays: np.ndarray):
    lengths = {len(a) for a in arrays.values()}
    if len(lengths) != 1:
      raise ValueError(f"arrays of different lengths: { {k: len(a) for k, a in arrays.items()} }")
    self._arrays = arrays
    self._len = lengths.pop()

  def __len__(self) -> int:
    return self._len

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    return {k: a[index] for k, a in self._arrays.items()}


def tfds_name(dataset: str) -> str | None:
  return dataset[len("tfds:"):] if dataset.startswith("tfds:") else None


def _tfds_source(name: str, split: str, data_dir: str | None):
  import tensorflow_datasets as tfds

  return tfds.data_source(name, split=split, data_dir=data_dir, download=False)


def text_source(dataset: str, split: str, *, data_dir: str | None = None,
                text_key: str = "text") -> Sequence[Any]:
  """Records of one text split, each a str/bytes document."""
  if dataset == "embedded":
    return embedded.text_documents(split)
  if dataset == "bigram_backcopy":
    return synthetic.bigram_backcopy(split)
  name = tfds_name(dataset)
  if name is None:
    raise ValueError(f"config.data.dataset: unknown dataset {dataset!r} "
                     "(expected 'embedded', 'bigram_backcopy' or 'tfds:NAME')")
  return _KeyedSource(_tfds_source(name, split, data_dir), text_key)


def image_source(dataset: str, split: str, *, data_dir: str | None = None,
                 image_key: str = "image", label_key: str = "label") -> Sequence[Any]:
  """Records of one image split, each {"image": uint8 [H, W, C], "label": int}."""
  if dataset == "embedded":
    images, labels = embedded.digits(split)
    return ArraySource(image=images, label=labels)
  name = tfds_name(dataset)
  if name is None:
    raise ValueError(f"config.data.dataset: unknown dataset {dataset!r} "
                     "(expected 'embedded' or 'tfds:NAME')")
  return _RenamedSource(_tfds_source(name, split, data_dir), {image_key: "image", label_key: "label"})


class _KeyedSource:
  """Picks one feature of a dict-valued source."""

  def __init__(self, source, key: str):
    self._source, self._key = source, key

  def __len__(self) -> int:
    return len(self._source)

  def __getitem__(self, index: int):
    return self._source[index][self._key]


class _RenamedSource:
  """Keeps and renames some features of a dict-valued source."""

  def __init__(self, source, names: dict[str, str]):
    self._source, self._names = source, names

  def __len__(self) -> int:
    return len(self._source)

  def __getitem__(self, index: int):
    record = self._source[index]
    return {new: record[old] for old, new in self._names.items()}
