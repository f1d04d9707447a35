"""The fused paths behind ops.dot_product_attention ("pallas" interpreted on CPU, "cudnn") vs reference."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import outeffhop_jax as oe
from outeffhop_jax.ops import attention as attention_lib


def qkv(T=37, S=45, N=4, K=2, H=16, seed=0):
  ks = jax.random.split(jax.random.key(seed), 3)
  return (jax.random.normal(ks[0], (2, T, N, H)), jax.random.normal(ks[1], (2, S, K, H)),
          jax.random.normal(ks[2], (2, S, K, H)))


@pytest.mark.parametrize("impl", ["pallas", "cudnn"])
@pytest.mark.parametrize("normalizer,causal", [("softmax", True), ("softmax1", False), ("softmax_n:4", True)])
def test_fused_paths_match_reference_with_padding_gqa_and_odd_lengths(impl, normalizer, causal):
  q, k, v = qkv()
  pad = jnp.asarray(np.arange(45)[None] < np.array([30, 45])[:, None])[:, None, None, :]
  sinks = jnp.array([0.1, -0.5, 1.0, 0.0])

  def loss(impl, sinks):
    return lambda q, k, v, s: jnp.sum(jnp.sin(oe.dot_product_attention(
        q, k, v, normalizer=normalizer, mask=pad, is_causal=causal, sinks=s if sinks else None,
        implementation=impl, block_k=16)))

  ref = oe.dot_product_attention(q, k, v, normalizer=normalizer, mask=pad, is_causal=causal)
  out = oe.dot_product_attention(q, k, v, normalizer=normalizer, mask=pad, is_causal=causal,
                                 implementation=impl, block_k=16)
  np.testing.assert_allclose(out, ref, atol=1e-5)
  g_ref = jax.grad(loss("reference", True), argnums=(0, 1, 2, 3))(q, k, v, sinks)
  g_out = jax.grad(loss(impl, True), argnums=(0, 1, 2, 3))(q, k, v, sinks)
  for name, a, b in zip("qkvs", g_out, g_ref):
    np.testing.assert_allclose(a, b, atol=1e-4, err_msg=f"d{name}")


def test_fused_fully_masked_rows_are_zero():
  q, k, v = qkv(T=16, S=16)
  pad = jnp.zeros((2, 1, 1, 16), bool).at[0].set(True)  # batch 1 sees no key at all
  for impl in ("pallas", "cudnn"):
    out = oe.dot_product_attention(q, k, v, normalizer="softmax1", mask=pad, implementation=impl)
    np.testing.assert_array_equal(out[1], 0.0)
    assert np.isfinite(out).all()


def test_general_masks_are_refused_by_fused_paths_with_a_clear_error():
  q, k, v = qkv(T=8, S=8)
  mask = jnp.asarray(np.random.default_rng(0).random((2, 4, 8, 8)) < 0.5)
  for impl in ("pallas", "cudnn"):
    with pytest.raises(ValueError, match="key-padding masks"):
      oe.dot_product_attention(q, k, v, mask=mask, implementation=impl)


def test_select_implementation_per_platform():
  sel = attention_lib.select_implementation
  assert sel("softmax1", shape=(1, 128, 4, 128, 64), platform="cpu") == "reference"
  assert sel("softmax1", shape=(1, 16384, 12, 16384, 64), platform="cpu") == "blockwise"
  assert sel("clipped:-0.1:1", shape=(1, 16384, 12, 16384, 64), platform="gpu") == "reference"
  assert sel("softmax1", shape=(1, 1024, 12, 1024, 64), platform="gpu") == "pallas"
  assert sel("softmax1", shape=(1, 1024, 12, 1024, 128), platform="tpu") == "splash"
  assert sel("softmax1", shape=(1, 1024, 12, 1024, 64), platform="tpu") == "pallas"
  general = jnp.ones((1, 12, 1024, 1024), bool)
  assert sel("softmax1", shape=(1, 1024, 12, 1024, 64), mask=general, platform="gpu") == "blockwise"
  assert sel("softmax1", shape=(1, 1024, 12, 1024, 48), platform="gpu") == "blockwise"


def test_implementation_none_runs_on_cpu():
  q, k, v = qkv(T=8, S=8)
  np.testing.assert_allclose(oe.dot_product_attention(q, k, v, implementation=None),
                             oe.dot_product_attention(q, k, v), atol=1e-6)
