"""Bigram-backcopy text: the copy rule at every trigger, the chain's statistics elsewhere, splits,
argument checks, and the training pipeline reading it."""
import numpy as np
import pytest

from outeffhop_jax import data
from outeffhop_jax.data import synthetic

V, K = 16, 2  # a small alphabet keeps the transition-frequency check tight


def _symbols(docs):
  return np.stack([np.frombuffer(d, np.uint8) for d in docs])


def test_every_step_after_a_trigger_copies_the_symbol_before_it():
  x_NL = _symbols(synthetic.bigram_backcopy("train", num_docs=64, doc_len=512, vocab=V,
                                            num_triggers=K))
  assert x_NL.shape == (64, 512) and x_NL.max() < V and x_NL[:, 0].min() >= K
  trig = x_NL[:, 1:-1] < K
  assert 0.02 < trig.mean() < 0.5  # triggers occur at their chain's rate
  np.testing.assert_array_equal(x_NL[:, 2:][trig], x_NL[:, :-2][trig])


def test_other_steps_follow_the_documented_dirichlet_chain():
  """Empirical transition frequencies at non-trigger positions against P drawn as the module
  docstring states (rows Dirichlet(alpha), seed chain_seed)."""
  x_NL = _symbols(synthetic.bigram_backcopy("train", num_docs=256, doc_len=1024, vocab=V,
                                            num_triggers=K, alpha=0.5))
  P = np.random.default_rng(0).dirichlet(np.full(V, 0.5), V)
  cur, nxt = x_NL[:, :-1].ravel(), x_NL[:, 1:].ravel()
  bigram = cur >= K
  counts = np.zeros((V, V))
  np.add.at(counts, (cur[bigram], nxt[bigram]), 1)
  for a in range(K, V):
    n = counts[a].sum()
    assert n > 2000, a
    # 5 binomial standard deviations of a frequency estimated from n draws.
    tol = 5 * np.sqrt(P[a] * (1 - P[a]) / n) + 1e-3
    assert np.all(np.abs(counts[a] / n - P[a]) < tol), a


def test_splits_share_the_chain_not_the_samples_and_calls_repeat():
  kw = dict(num_docs=8, doc_len=256, vocab=V, num_triggers=K)
  train, val = synthetic.bigram_backcopy("train", **kw), synthetic.bigram_backcopy("validation", **kw)
  assert not set(train) & set(val)
  assert synthetic.bigram_backcopy.__wrapped__("train", **kw) == train  # deterministic, not cached
  other_chain = synthetic.bigram_backcopy("train", chain_seed=1, **kw)
  assert other_chain != train
  assert len(synthetic.bigram_backcopy("test")) == 64 and len(synthetic.bigram_backcopy("test")[0]) == 4096


@pytest.mark.parametrize("kwargs,match", [
    (dict(split="dev"), "split must be one of"),
    (dict(split="train", vocab=300), "vocab must be in"),
    (dict(split="train", num_triggers=0), "num_triggers must be in"),
    (dict(split="train", vocab=8, num_triggers=8), "num_triggers must be in"),
    (dict(split="train", doc_len=1), "doc_len must be"),
    (dict(split="train", num_docs=0), "num_docs must be"),
])
def test_bad_arguments_are_named(kwargs, match):
  split = kwargs.pop("split")
  with pytest.raises(ValueError, match=match):
    synthetic.bigram_backcopy(split, **kwargs)


def test_text_source_and_pipeline_read_it_as_bytes():
  docs = data.text_source("bigram_backcopy", "validation")
  assert docs == synthetic.bigram_backcopy("validation")
  tok = data.ByteTokenizer()
  batch = next(iter(data.text_dataset(docs, tok, seq_len=64, batch_size=4, train=False,
                                                 add_bos=True, prefetch=0)))
  tokens = np.asarray(batch["tokens"])
  assert tokens.shape == (4, 65) and (tokens[:, 0] == tok.bos_id).all()
  body = tokens[:, 1:]
  in_alphabet = (body >= tok.num_special) & (body < tok.num_special + 64)
  assert (in_alphabet | (body == tok.eos_id)).all() and in_alphabet.mean() > 0.9
