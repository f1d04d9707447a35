"""Hopfield energies and retrieval: the CCCP identity, monotone energy, retrieval, the no-op memory."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import outeffhop_jax as oe

NORMALIZERS = ["softmax", "softmax1", "softmax_n:3", "sparsemax", "entmax:1.5"]


def memories_and_queries(M=12, d=6, n=5, seed=0):
  rng = np.random.default_rng(seed)
  xi = jnp.asarray(rng.normal(size=(M, d)) / np.sqrt(d), jnp.float32)
  x = jnp.asarray(rng.normal(size=(n, d)), jnp.float32)
  return xi, x


@pytest.mark.parametrize("normalizer", NORMALIZERS)
def test_update_is_x_minus_grad_energy(normalizer):
  xi, x = memories_and_queries()
  beta = 2.0
  grad_e = jax.vmap(jax.grad(lambda q: oe.hopfield_energy(q, xi, beta=beta, normalizer=normalizer)))(x)
  np.testing.assert_allclose(oe.hopfield_update(x, xi, beta=beta, normalizer=normalizer), x - grad_e,
                             atol=2e-5)


def test_energies_match_their_closed_forms():
  xi, x = memories_and_queries()
  beta = 1.5
  z = beta * np.asarray(x, np.float64) @ np.asarray(xi, np.float64).T
  half = 0.5 * (np.asarray(x, np.float64) ** 2).sum(-1)
  dense = half - np.log(np.exp(z).sum(-1)) / beta
  outeff = half - np.log(1 + np.exp(z).sum(-1)) / beta
  np.testing.assert_allclose(oe.hopfield_energy(x, xi, beta=beta, normalizer="softmax"), dense, rtol=1e-5)
  np.testing.assert_allclose(oe.hopfield_energy(x, xi, beta=beta), outeff, rtol=1e-5)
  # OutEffHop's extra zero-energy memory makes its energy lower than the dense one, never higher.
  assert (outeff < dense).all()


@pytest.mark.parametrize("normalizer", NORMALIZERS)
def test_energy_non_increasing_along_iterates(normalizer):
  xi, x = memories_and_queries(M=20, d=8, n=16, seed=1)
  traj = oe.hopfield_retrieve(x, xi, beta=4.0, normalizer=normalizer, max_steps=8, return_trajectory=True)
  assert traj.shape == (9, 16, 8)
  energies = jax.vmap(lambda s: oe.hopfield_energy(s, xi, beta=4.0, normalizer=normalizer))(traj)
  assert (np.diff(np.asarray(energies), axis=0) <= 1e-5).all()


def test_retrieves_stored_pattern_among_1000():
  rng = np.random.default_rng(2)
  d, M = 64, 1000
  xi = rng.normal(size=(M, d))
  xi /= np.linalg.norm(xi, axis=1, keepdims=True)
  idx = rng.choice(M, size=16, replace=False)
  noisy = xi[idx] + 0.15 * rng.normal(size=(16, d)) / np.sqrt(d)
  for normalizer in ("softmax", "softmax1"):
    out = np.asarray(oe.hopfield_retrieve(jnp.asarray(noisy, jnp.float32), jnp.asarray(xi, jnp.float32),
                                          beta=64.0, normalizer=normalizer, max_steps=3))
    cos = (out * xi[idx]).sum(-1) / np.linalg.norm(out, axis=-1)
    assert (cos > 0.99).all(), (normalizer, cos.min())


def test_outeffhop_no_op_memory_when_nothing_matches():
  rng = np.random.default_rng(3)
  xi = jnp.asarray(rng.normal(size=(10, 8)), jnp.float32)
  # A query whose similarity to every memory is -1 (least squares; M > d so it is the best fit).
  x = jnp.asarray(np.linalg.lstsq(np.asarray(xi), -np.ones(10), rcond=None)[0], jnp.float32)
  sims = np.asarray(xi @ x)
  assert (sims < 0).all()
  beta = 200.0
  out1 = oe.hopfield_update(x, xi, beta=beta, normalizer="softmax1")
  out0 = oe.hopfield_update(x, xi, beta=beta, normalizer="softmax")
  np.testing.assert_allclose(out1, 0.0, atol=1e-6)  # the no-op memory
  best = np.asarray(xi)[np.argmax(sims)]
  np.testing.assert_allclose(out0, best, atol=1e-3)  # dense retrieval returns a memory anyway


def test_zero_vector_is_not_a_fixed_point_documented_behaviour():
  xi, _ = memories_and_queries(M=7)
  out = oe.hopfield_update(jnp.zeros(6), xi, beta=3.0, normalizer="softmax1")
  np.testing.assert_allclose(out, np.asarray(xi).mean(0) * 7 / 8, atol=1e-6)


def test_retrieve_tol_freezes_converged_entries_and_is_differentiable():
  xi, x = memories_and_queries(n=4)
  one = oe.hopfield_retrieve(x, xi, beta=2.0, max_steps=1)
  frozen = oe.hopfield_retrieve(x, xi, beta=2.0, max_steps=5, tol=1e9)
  np.testing.assert_allclose(frozen, one, atol=1e-6)  # every row frozen after its first step
  np.testing.assert_allclose(oe.hopfield_retrieve(x, xi, beta=2.0, max_steps=0), x)
  g = jax.grad(lambda xi: jnp.sum(oe.hopfield_retrieve(x, xi, beta=2.0, max_steps=3) ** 2))(xi)
  assert np.isfinite(g).all() and np.abs(g).sum() > 0


@pytest.mark.parametrize("call,match", [
    (lambda xi, x: oe.hopfield_energy(x, xi, beta=0.0), "beta"),
    (lambda xi, x: oe.hopfield_update(x, xi, beta=-1.0), "beta"),
    (lambda xi, x: oe.hopfield_update(x[:, :3], xi, beta=1.0), "query must have shape"),
    (lambda xi, x: oe.hopfield_update(x, xi[None], beta=1.0), "memories must have rank 2"),
    (lambda xi, x: oe.hopfield_update(x, xi, beta=1.0, normalizer="bogus"), "valid forms"),
    (lambda xi, x: oe.hopfield_energy(x, xi, beta=1.0, normalizer="clipped:-0.1:1"), "no Hopfield energy"),
    (lambda xi, x: oe.hopfield_retrieve(x, xi, beta=1.0, max_steps=-1), "max_steps"),
])
def test_bad_input(call, match):
  xi, x = memories_and_queries()
  with pytest.raises((ValueError, TypeError), match=match):
    call(xi, x)
