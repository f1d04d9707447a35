"""grain pipelines: packing with BOS, determinism, exact iterator resume, per-host shards."""
import numpy as np

from outeffhop_jax import data

_TOK = data.ByteTokenizer()
_DOCS = [f"document {i}: " + "lorem ipsum " * (i % 7 + 1) for i in range(200)]


def _take(it, n):
  return [next(it)["tokens"] for _ in range(n)]


def test_text_rows_start_with_bos_and_are_deterministic():
  ds = data.text_dataset(_DOCS, _TOK, seq_len=16, batch_size=4, train=True, seed=3)
  it1, it2 = iter(ds), iter(ds)
  a, b = _take(it1, 5), _take(it2, 5)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x, y)
  assert a[0].shape == (4, 17) and (a[0][:, 0] == _TOK.bos_id).all()
  assert (np.concatenate(a) == _TOK.eos_id).any()  # documents are separated by EOS
  other = _take(iter(data.text_dataset(_DOCS, _TOK, seq_len=16, batch_size=4, train=True,
                                       seed=4)), 5)
  assert any((x != y).any() for x, y in zip(a, other))
  it1.close(), it2.close()


def test_iterator_state_resumes_exactly():
  ds = data.text_dataset(_DOCS, _TOK, seq_len=16, batch_size=4, train=True, seed=0)
  it = iter(ds)
  _take(it, 7)
  state = it.get_state()
  want = _take(it, 10)
  it2 = iter(ds)
  it2.set_state(state)
  for x, y in zip(_take(it2, 10), want):
    np.testing.assert_array_equal(x, y)
  it.close(), it2.close()


def test_hosts_read_disjoint_shards():
  rows = []
  for pi in range(2):
    ds = data.text_dataset(_DOCS, _TOK, seq_len=1000, batch_size=1, train=False,
                           process_index=pi, process_count=2, add_bos=False, prefetch=0)
    rows.append(_TOK.decode(np.concatenate([b["tokens"][0] for b in ds])))
  for i in range(0, 200, 37):
    doc = f"document {i}: "
    assert (doc in rows[0]) != (doc in rows[1])


def test_image_eval_pads_to_a_fixed_count():
  images, labels = data.embedded.digits("validation")
  source = data.ArraySource(image=images, label=labels)
  batches = list(data.fixed_count(
      data.image_dataset(source, image_size=16, num_channels=3, batch_size=64, train=False), 6))
  assert len(batches) == 6
  assert batches[0]["images"].shape == (64, 16, 16, 3)
  assert sum(b["example_mask"].sum() for b in batches) == len(labels)
  assert batches[-1]["example_mask"].sum() == 0
  seen = np.concatenate([b["labels"][b["example_mask"] > 0] for b in batches])
  np.testing.assert_array_equal(seen, labels)
