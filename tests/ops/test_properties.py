"""Property-based tests (hypothesis) over shapes, axes, dtypes and logit ranges."""
import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

import outeffhop_jax as oe

DTYPES = st.sampled_from([jnp.float32, jnp.bfloat16, jnp.float16])
SHAPES = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=6)
FAST = settings(max_examples=10, deadline=None)


def logits(shape, scale, seed):
  return np.random.default_rng(seed).normal(size=shape) * scale


@FAST
@given(shape=SHAPES, data=st.data(), dtype=DTYPES, scale=st.sampled_from([1.0, 30.0, 1e4]),
       seed=st.integers(0, 2**16))
def test_softmax1_rows_in_unit_interval_and_match_extra_zero_logit(shape, data, dtype, scale, seed):
  axis = data.draw(st.integers(-len(shape), len(shape) - 1))
  x = logits(shape, scale, seed)
  if dtype == jnp.float16:
    x = np.clip(x, -6e4, 6e4)
  xd = jnp.asarray(x, dtype)
  p = np.asarray(oe.softmax1(xd, axis=axis), np.float64)
  assert np.isfinite(p).all() and (p >= 0).all()
  assert (p.sum(axis=axis) <= 1 + 1e-2).all()
  xf = np.moveaxis(np.asarray(xd, np.float64), axis, -1)
  full = np.concatenate([xf, np.zeros(xf.shape[:-1] + (1,))], -1)
  e = np.exp(full - full.max(-1, keepdims=True))
  ref = np.moveaxis((e / e.sum(-1, keepdims=True))[..., :-1], -1, axis)
  tol = 1e-5 if dtype == jnp.float32 else 1e-2
  np.testing.assert_allclose(p, ref, atol=tol)


@FAST
@given(shape=SHAPES, seed=st.integers(0, 2**16), dtype=DTYPES,
       spec=st.sampled_from(["softmax", "softmax1", "softmax_n:5", "clipped1:-0.03:1.0", "sparsemax",
                             "entmax:1.5"]))
def test_every_normalizer_masked_rows_zero_and_finite(shape, seed, dtype, spec):
  rng = np.random.default_rng(seed)
  x = jnp.asarray(rng.normal(size=shape) * 5, dtype)
  where = rng.random(shape) < 0.5
  p = np.asarray(oe.get_normalizer(spec)(x, where=jnp.asarray(where)), np.float32)
  assert np.isfinite(p).all()
  assert (p[~where] == 0).all()
  assert (p.sum(-1) <= 1 + 2e-2).all()


@settings(max_examples=3, deadline=None)
@given(B=st.integers(1, 2), T=st.integers(1, 12), S=st.integers(1, 12), K=st.integers(1, 2),
       G=st.integers(1, 2), causal=st.booleans(), block_k=st.integers(1, 8), seed=st.integers(0, 999))
def test_blockwise_equals_reference_over_shapes(B, T, S, K, G, causal, block_k, seed):
  ks = jax.random.split(jax.random.key(seed), 3)
  q = jax.random.normal(ks[0], (B, T, K * G, 4))
  k = jax.random.normal(ks[1], (B, S, K, 4))
  v = jax.random.normal(ks[2], (B, S, K, 4))
  ref = oe.dot_product_attention(q, k, v, is_causal=causal)
  blk = oe.dot_product_attention(q, k, v, is_causal=causal, implementation="blockwise", block_k=block_k)
  np.testing.assert_allclose(blk, ref, atol=3e-5)
