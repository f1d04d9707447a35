"""Digit memories, the gallery's no-op query, and the sweeps' data (small sizes)."""
import numpy as np
import pytest


from outeffhop_jax.viz import (capacity_curves, capacity_figure, digit_patterns, gallery_figure,
                               gallery_queries, noop_figure, noop_fraction)
from outeffhop_jax.viz.gallery import retrieve_grid
from outeffhop_jax.viz.noop import similarity_sweep

NORMALIZERS = ("softmax", "softmax1", "sparsemax", "entmax:1.5")


def test_digit_patterns_are_centred_unit_vectors():
  x, labels = digit_patterns(10, seed=1)
  assert x.shape == (10, 64) and sorted(labels) == list(range(10))
  np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, rtol=1e-5)
  raw, _ = digit_patterns(10, seed=1, center=False, normalize=False)
  assert (raw @ raw.T > 0).all()  # why centring matters: raw digits are all positively correlated
  assert (x @ x.T < 0).any()


def test_unlike_all_query_is_a_noop_only_for_outeffhop():
  xi, _ = digit_patterns(10)
  queries, targets, labels = gallery_queries(xi, num_targets=2)
  assert len(queries) == len(targets) == len(labels) == 5 and labels[-1] == "unlike all"
  assert (queries[-1] @ xi.T < 0).all()
  out = retrieve_grid(queries, xi, normalizers=NORMALIZERS, betas=(64.0,), steps=1)[0]
  norms = np.linalg.norm(out[:, -1], axis=-1)
  assert norms[1] < 1e-3 and (np.delete(norms, 1) > 0.1).all()
  # The masked/noisy queries are retrieved by every normalizer at this beta.
  np.testing.assert_allclose(out[:, :4], np.broadcast_to(targets[:4], out[:, :4].shape), atol=1e-2)
  fig = gallery_figure(xi, queries, targets, labels, normalizers=NORMALIZERS, betas=(64.0,))
  assert len(fig.axes) == 5 * (2 + 4) + 1  # tiles + one colorbar


def test_noop_fraction_separates_outeffhop():
  xi, _ = digit_patterns(8)
  res = noop_fraction(xi, betas=(64.0,), normalizers=NORMALIZERS, num_queries=200)
  noop = res.is_noop()[0]
  assert noop.shape == (4, 200)
  assert not noop[[0, 2, 3]].any()  # convex combinations of memories never vanish
  unlike = res.similarity < -0.05
  assert unlike.sum() > 5 and noop[1, unlike].all()
  assert not noop[1, res.similarity > 0.1].any()
  centres, frac, _ = res.binned(6)
  assert centres.shape == (6,) and frac.shape == (1, 4, 6)
  assert noop_figure(res, bins=6).axes


def test_similarity_sweep_spans_both_signs():
  import jax
  xi, _ = digit_patterns(8)
  q = np.asarray(similarity_sweep(xi, 300, jax.random.PRNGKey(0)))
  np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0, rtol=1e-5)
  best = (q @ xi.T).max(1)
  assert best.min() < 0 < best.max()


def test_capacity_curves_shape_and_trend():
  res = capacity_curves(dim=8, num_memories=(2, 32), betas=(1.0, 32.0),
                        normalizers=("softmax", "softmax1"), num_queries=16, noise=0.1, steps=2)
  assert res.error.shape == (2, 2, 2)
  assert res.error[1, :, 0].max() < 0.05  # few memories, high beta: exact retrieval
  assert (res.error[0] > res.error[1]).all()  # a low beta blurs memories together
  assert len(capacity_figure(res).axes) == 2


def test_bad_arguments():
  xi, _ = digit_patterns(4)
  with pytest.raises(ValueError, match="num must be"):
    digit_patterns(0)
  with pytest.raises(ValueError, match="unknown normalizer spec"):
    noop_fraction(xi, normalizers=("soft-max",))
  with pytest.raises(ValueError, match="8x8 images"):
    gallery_figure(xi[:, :16], xi[:, :16], xi[:, :16], ["a"] * 4)
  with pytest.raises(ValueError, match="num_memories"):
    capacity_curves(num_memories=())
