"""The embedded default data loads offline and is real."""
import numpy as np

from outeffhop_jax import data


def test_embedded_text_is_real_english_and_split():
  train = data.embedded.text_documents("train")
  val = data.embedded.text_documents("validation")
  assert len(train) > 300 and len(val) > 3
  assert sum(map(len, train)) > 5_000_000  # CPython's stdlib source + pydoc topics
  assert not set(val) & set(train)
  text = " ".join(train[:50])
  for word in ("the", "return", "function"):
    assert word in text


def test_embedded_digits():
  x, y = data.embedded.digits("train")
  xv, yv = data.embedded.digits("validation")
  assert x.shape[1:] == (8, 8, 1) and x.dtype == np.uint8 and x.max() > 200
  assert len(x) + len(xv) == 1797 and set(np.unique(y)) == set(range(10))
