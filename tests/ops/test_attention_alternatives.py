"""Attention with sigmoid / softplus / stablemax / softpick: naive float64, reference vs blockwise."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import outeffhop_jax as oe
from outeffhop_jax import models
from outeffhop_jax import nn as onn

SPECS = ["sigmoid", "sigmoid:-1.5", "softplus", "stablemax", "softpick"]
B, T, S, N, K, H = 2, 7, 11, 4, 2, 8  # GQA: two query heads per kv head; T != S


def _qkv(dtype=jnp.float32, q_scale=2.0, seed=0):
  kq, kk, kv = jax.random.split(jax.random.key(seed), 3)
  q = jax.random.normal(kq, (B, T, N, H)) * q_scale
  k = jax.random.normal(kk, (B, S, K, H))
  v = jax.random.normal(kv, (B, S, K, H))
  return q.astype(dtype), k.astype(dtype), v.astype(dtype)


def _padding():
  return (np.arange(S)[None, :] < np.array([S, 5])[:, None])[:, None, None, :]  # [B, 1, 1, S]


def _general_mask():
  m = np.random.default_rng(3).random((B, N, T, S)) < 0.6
  m[1, 2, 4] = False  # one fully masked row
  return m


CASES = {"none": (None, False, 4), "causal+padding": (_padding(), True, 3),
         "general": (_general_mask(), False, 16)}  # (mask, causal, block_k)


def _naive_attention(naive, spec, q, k, v, mask, causal):
  q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
  k, v = np.repeat(k, N // K, axis=2), np.repeat(v, N // K, axis=2)
  logits = np.einsum("btnh,bsnh->bnts", q, k) / np.sqrt(H)
  valid = np.ones((B, N, T, S), bool)
  if mask is not None:
    valid &= np.broadcast_to(mask, valid.shape)
  if causal:
    valid &= np.arange(S)[None, :] <= np.arange(T)[:, None]
  return np.einsum("bnts,bsnh->btnh", naive(spec, logits, valid), v)


@pytest.mark.parametrize("spec", SPECS)
def test_reference_matches_naive_formula(spec, naive):
  q, k, v = _qkv()
  for mask, causal, _ in CASES.values():
    out = oe.dot_product_attention(q, k, v, normalizer=spec, mask=mask, is_causal=causal)
    want = _naive_attention(naive, spec, q, k, v, mask, causal)
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("spec", SPECS)
def test_blockwise_matches_reference_values_and_gradients(spec, case):
  mask, causal, block_k = CASES[case]
  q, k, v = _qkv()
  w = jax.random.normal(jax.random.key(9), (B, T, N, H))

  def value_and_grads(impl):
    loss = lambda q, k, v: jnp.sum(oe.dot_product_attention(  # noqa: E731
        q, k, v, normalizer=spec, mask=mask, is_causal=causal, implementation=impl,
        block_k=block_k) * w)
    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))(q, k, v)

  (ref, g_ref), (blk, g_blk) = value_and_grads("reference"), value_and_grads("blockwise")
  np.testing.assert_allclose(blk, ref, rtol=1e-5, atol=1e-5)
  for a, b in zip(g_blk, g_ref):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
  out = oe.dot_product_attention(q, k, v, normalizer=spec, mask=mask, is_causal=causal,
                                 implementation="blockwise", block_k=block_k)
  np.testing.assert_allclose(out, oe.dot_product_attention(q, k, v, normalizer=spec, mask=mask,
                                                           is_causal=causal), rtol=1e-5, atol=2e-6)
  if case == "general":
    np.testing.assert_array_equal(out[1, 4, 2], 0.0)  # the fully masked row


@pytest.mark.parametrize("spec", ["sigmoid", "softplus", "stablemax", "softpick"])
def test_blockwise_extreme_logits_and_bf16_are_finite(spec):
  q, k, v = _qkv(q_scale=3e3)  # logits of order +-1e4
  g = jax.jit(jax.grad(lambda q, k, v: jnp.sum(oe.dot_product_attention(
      q, k, v, normalizer=spec, mask=_padding(), is_causal=True, implementation="blockwise",
      block_k=4) ** 2), argnums=(0, 1, 2)))(q, k, v)
  assert all(np.isfinite(np.asarray(x)).all() for x in g)
  q, k, v = _qkv(jnp.bfloat16)
  out = oe.dot_product_attention(q, k, v, normalizer=spec, is_causal=True, implementation="blockwise",
                                 block_k=4)
  assert out.dtype == jnp.bfloat16
  ref = oe.dot_product_attention(*(a.astype(jnp.float32) for a in (q, k, v)), normalizer=spec,
                                 is_causal=True)
  np.testing.assert_allclose(np.asarray(out, np.float32), ref, atol=3e-2)


def test_blockwise_never_materialises_the_scores():
  """No value in the forward + backward program has B * N * T * S elements or more."""
  Tl = Sl = 64
  q = jnp.ones((1, Tl, 2, 8))
  kv = jnp.ones((1, Sl, 2, 8))
  for spec in ("sigmoid", "softplus", "stablemax", "softpick"):
    fn = jax.grad(lambda q, k, v: jnp.sum(oe.dot_product_attention(  # noqa: B023
        q, k, v, normalizer=spec, is_causal=True, implementation="blockwise", block_k=16)),
        argnums=(0, 1, 2))
    jaxpr = jax.make_jaxpr(fn)(q, kv, kv)
    sizes = []

    def walk(jx):
      for eqn in jx.eqns:
        sizes.extend(int(np.prod(o.aval.shape)) for o in eqn.outvars if hasattr(o.aval, "shape"))
        for p in eqn.params.values():
          for sub in (p if isinstance(p, (list, tuple)) else [p]):
            if hasattr(sub, "jaxpr"):
              walk(sub.jaxpr if hasattr(sub.jaxpr, "eqns") else sub.jaxpr.jaxpr)
            elif hasattr(sub, "eqns"):
              walk(sub)

    walk(jaxpr.jaxpr)
    assert max(sizes) < 1 * 2 * Tl * Sl, (spec, max(sizes))


@pytest.mark.parametrize("spec", ["sigmoid", "softplus", "stablemax", "softpick"])
def test_fused_paths_refuse_with_a_clear_error(spec):
  q, k, v = _qkv()
  for impl in ("pallas", "splash", "cudnn"):
    with pytest.raises(ValueError, match=f"implementation '{impl}' supports only the softmax/sink "
                                         f"family; use 'reference' or 'blockwise' for normalizer "
                                         f"'{spec}'"):
      oe.dot_product_attention(q, k, v, normalizer=spec, implementation=impl)
  assert oe.select_implementation(spec, shape=(B, T, N, S, H), platform="cpu") == "reference"
  big = (8, 4096, 16, 4096, 64)  # 8 GiB of float32 scores
  for platform in ("cpu", "gpu", "tpu"):
    assert oe.select_implementation(spec, shape=big, platform=platform) == "blockwise"
  np.testing.assert_allclose(oe.dot_product_attention(q, k, v, normalizer=spec, implementation=None),
                             oe.dot_product_attention(q, k, v, normalizer=spec), atol=1e-6)
  # Layers and configs refuse the combination when built, before any data is seen.
  with pytest.raises(ValueError, match="supports only the softmax/sink family"):
    onn.MultiHeadAttention(16, 4, normalizer=spec, implementation="pallas", rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="supports only the softmax/sink family"):
    models.OPTConfig.from_preset("tiny", normalizer=spec, attention_impl="cudnn")
  with pytest.raises(ValueError, match="sinks"):
    oe.dot_product_attention(q, k, v, normalizer=spec, sinks=jnp.zeros((N,)))


def test_other_kinds_still_refuse_blockwise():
  q, k, v = _qkv()
  with pytest.raises(ValueError, match="use 'reference' for normalizer 'sparsemax'"):
    oe.dot_product_attention(q, k, v, normalizer="sparsemax", implementation="blockwise")
  with pytest.raises(ValueError, match="use 'reference' for normalizer 'clipped:-0.1:1.0'"):
    oe.dot_product_attention(q, k, v, normalizer="clipped:-0.1:1.0", implementation="pallas")
