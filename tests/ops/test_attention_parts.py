"""The two pieces every reference attention path shares (ops and the hooked nn layer), against
naive loops over batch, head, query and key with grouped key/value heads."""
import numpy as np

from outeffhop_jax.ops.attention import scaled_scores, weighted_values


def test_scaled_scores_and_weighted_values_match_loops_with_grouped_heads():
  rng = np.random.default_rng(0)
  B, T, S, N, K, H = 2, 3, 5, 6, 2, 4
  q = rng.normal(size=(B, T, N, H)).astype(np.float32)
  k = rng.normal(size=(B, S, K, H)).astype(np.float32)
  v = rng.normal(size=(B, S, K, 7)).astype(np.float32)
  p = rng.random(size=(B, N, T, S)).astype(np.float32)
  g = N // K
  want_s = np.zeros((B, N, T, S))
  want_o = np.zeros((B, T, N, 7))
  for b in range(B):
    for n in range(N):
      for t in range(T):
        for s in range(S):
          want_s[b, n, t, s] = 0.5 * q[b, t, n] @ k[b, s, n // g]
          want_o[b, t, n] += p[b, n, t, s] * v[b, s, n // g]
  got_s = np.asarray(scaled_scores(q, k, 0.5))
  got_o = np.asarray(weighted_values(p, v))
  assert got_s.dtype == np.float32 and got_s.shape == (B, N, T, S)
  assert got_o.dtype == np.float32 and got_o.shape == (B, T, N, 7)
  np.testing.assert_allclose(got_s, want_s, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(got_o, want_o, rtol=1e-5, atol=1e-5)
