"""JAX's splash attention with sinks, wrapped to [B, T, N, H], interpreted on CPU."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from outeffhop_jax.kernels import attention_reference
from outeffhop_jax.kernels import splash_attention


@pytest.mark.parametrize("causal,segments", [(True, False), (False, True)])
def test_splash_matches_reference_with_sinks(causal, segments):
  B, T, N, K, H = 2, 256, 2, 1, 128
  kq, kk, kv, ks = jax.random.split(jax.random.key(0), 4)
  q = jax.random.normal(kq, (B, T, N, H))
  k = jax.random.normal(kk, (B, T, K, H))
  v = jax.random.normal(kv, (B, T, K, H))
  sinks = jax.random.normal(ks, (N,))
  kw = dict(causal=causal)
  if segments:  # batch 1 has queries with no visible key: the sink takes all of their mass
    kw["q_segment_ids"] = jnp.array([[1] * 200 + [2] * 56, [1] * 128 + [3] * 128])
    kw["kv_segment_ids"] = jnp.array([[1] * 100 + [2] * 100 + [0] * 56, [1] * 256])
  o, vjp = jax.vjp(lambda *a: splash_attention(*a[:3], sinks=a[3], **kw), q, k, v, sinks)
  o_ref, vjp_ref = jax.vjp(lambda *a: attention_reference(*a[:3], sinks=a[3], **kw),
                           q, k, v, sinks)
  np.testing.assert_allclose(o, o_ref, atol=1e-4, rtol=1e-4)
  do = jax.random.normal(jax.random.key(1), o.shape)
  for g, g_ref in zip(vjp(do), vjp_ref(do)):
    np.testing.assert_allclose(g, g_ref, atol=1e-4 * max(1.0, float(jnp.abs(g_ref).max())),
                               rtol=1e-4)


def test_splash_rejects_small_blocks():
  q = jax.ShapeDtypeStruct((1, 256, 2, 128), jnp.float32)
  with pytest.raises(ValueError, match="block_q=64"):
    jax.eval_shape(lambda q: splash_attention(q, q, q, block_q=64), q)
