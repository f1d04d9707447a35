"""Attention: "reference" vs a naive per-head formula, "blockwise" vs "reference" (values, gradients)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import outeffhop_jax as oe


def naive_attention(q, k, v, sinks=None, mask=None, causal=False):
  """Per (batch, head) loops in float64 NumPy; the sink is one extra logit with a zero value."""
  q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
  B, T, N, H = q.shape
  S, K = k.shape[1], k.shape[2]
  out = np.zeros((B, T, N, v.shape[-1]))
  for b in range(B):
    for n in range(N):
      kv = n // (N // K)
      logits = q[b, :, n] @ k[b, :, kv].T / np.sqrt(H)
      valid = np.ones((T, S), bool)
      if mask is not None:
        valid &= np.broadcast_to(np.asarray(mask), (B, N, T, S))[b, n]
      if causal:
        valid &= np.tril(np.ones((T, S), bool))
      logits = np.where(valid, logits, -np.inf)
      sink = -np.inf if sinks is None else float(np.asarray(sinks)[n])
      full = np.concatenate([logits, np.full((T, 1), sink)], axis=1)
      m = full.max(axis=1, keepdims=True)
      m = np.where(np.isfinite(m), m, 0)
      e = np.exp(full - m)
      z = e.sum(axis=1, keepdims=True)
      p = (e / np.where(z == 0, 1, z))[:, :-1]
      out[b, :, n] = p @ v[b, :, kv]
  return out


def make_qkv(B=2, T=9, S=11, N=4, K=2, H=8, dtype=jnp.float32, seed=0):
  ks = jax.random.split(jax.random.key(seed), 3)
  q = jax.random.normal(ks[0], (B, T, N, H), dtype)
  k = jax.random.normal(ks[1], (B, S, K, H), dtype)
  v = jax.random.normal(ks[2], (B, S, K, H), dtype)
  return q, k, v


@pytest.mark.parametrize("normalizer,sinks", [("softmax", None), ("softmax1", np.zeros(4)),
                                              ("softmax_n:3", np.full(4, np.log(3.0)))])
@pytest.mark.parametrize("causal", [False, True])
def test_reference_matches_naive_formula(normalizer, sinks, causal):
  q, k, v = make_qkv(T=7, S=7)
  mask = np.random.default_rng(0).random((2, 1, 7, 7)) < 0.7
  out = oe.dot_product_attention(q, k, v, normalizer=normalizer, mask=jnp.asarray(mask), is_causal=causal)
  np.testing.assert_allclose(out, naive_attention(q, k, v, sinks, mask, causal), atol=2e-5)


def test_reference_softmax_matches_jax_nn():
  q, k, v = make_qkv(N=4, K=4)
  ours = oe.dot_product_attention(q, k, v, normalizer="softmax")
  np.testing.assert_allclose(ours, jax.nn.dot_product_attention(q, k, v), atol=2e-6)


def test_fully_masked_rows_give_zero_output_and_finite_grads():
  q, k, v = make_qkv(T=5, S=6)
  mask = np.ones((2, 4, 5, 6), bool)
  mask[:, :, 2] = False
  for impl in ("reference", "blockwise"):
    for norm in ("softmax", "softmax1"):
      f = lambda q, k, v: oe.dot_product_attention(q, k, v, normalizer=norm, mask=jnp.asarray(mask),
                                                   implementation=impl, block_k=4)
      out = jax.jit(f)(q, k, v)
      np.testing.assert_array_equal(out[:, 2], 0.0)
      grads = jax.jit(jax.grad(lambda *a: jnp.sum(f(*a) ** 2), argnums=(0, 1, 2)))(q, k, v)
      assert all(np.isfinite(g).all() for g in grads)


CASES = [
    # (B, T, S, N, K, H, causal, mask kind, block_k)
    (2, 33, 33, 4, 2, 16, True, None, 8),
    (1, 17, 40, 4, 4, 8, False, "padding", 16),
    (2, 24, 24, 6, 3, 8, True, "padding", 7),
    (1, 12, 30, 2, 1, 8, False, "random", 32),
    (1, 2048, 2048, 2, 1, 16, True, "padding", 256),
]


@pytest.mark.parametrize("B,T,S,N,K,H,causal,mask_kind,block_k", CASES)
def test_blockwise_matches_reference_values_and_gradients(B, T, S, N, K, H, causal, mask_kind, block_k):
  q, k, v = make_qkv(B, T, S, N, K, H, seed=T)
  rng = np.random.default_rng(S)
  if mask_kind == "padding":
    lengths = rng.integers(S // 2, S + 1, size=B)
    mask = jnp.asarray(np.arange(S)[None, :] < lengths[:, None])[:, None, None, :]
  elif mask_kind == "random":
    mask = jnp.asarray(rng.random((B, N, T, S)) < 0.6)
  else:
    mask = None
  sinks = jnp.asarray(rng.normal(size=N), jnp.float32)
  w = jax.random.normal(jax.random.key(1), (B, T, N, H))

  def loss(impl):
    return lambda q, k, v, s: jnp.sum(w * oe.dot_product_attention(
        q, k, v, mask=mask, is_causal=causal, sinks=s, implementation=impl, block_k=block_k))

  # Jitted as a model runs them (op by op, the scan and its gradient compile ~3x longer).
  attend = jax.jit(lambda impl, q, k, v, s: oe.dot_product_attention(
      q, k, v, mask=mask, is_causal=causal, sinks=s, implementation=impl, block_k=block_k),
      static_argnums=0)
  ref = attend("reference", q, k, v, sinks)
  blk = attend("blockwise", q, k, v, sinks)
  np.testing.assert_allclose(blk, ref, atol=2e-5)
  g_ref = jax.jit(jax.grad(loss("reference"), argnums=(0, 1, 2, 3)))(q, k, v, sinks)
  g_blk = jax.jit(jax.grad(loss("blockwise"), argnums=(0, 1, 2, 3)))(q, k, v, sinks)
  for name, a, b in zip("qkvs", g_blk, g_ref):
    np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-4, err_msg=f"d{name}")


@pytest.mark.parametrize("normalizer", ["softmax", "softmax1", "softmax_n:8"])
def test_blockwise_uses_the_normalizers_sink(normalizer):
  q, k, v = make_qkv(T=20, S=20)
  ref = oe.dot_product_attention(q, k, v, normalizer=normalizer, is_causal=True)
  blk = jax.jit(lambda *a: oe.dot_product_attention(
      *a, normalizer=normalizer, is_causal=True, implementation="blockwise", block_k=6))(q, k, v)
  np.testing.assert_allclose(blk, ref, atol=2e-5)


def test_sinks_zero_equals_softmax1_and_override_normalizer():
  q, k, v = make_qkv()
  a = oe.dot_product_attention(q, k, v, normalizer="softmax", sinks=jnp.zeros(4))
  b = oe.dot_product_attention(q, k, v, normalizer="softmax1")
  np.testing.assert_allclose(a, b, atol=1e-6)


def test_bf16_blockwise_close_to_f32_reference():
  q, k, v = make_qkv(T=64, S=64, dtype=jnp.bfloat16)
  out = jax.jit(lambda *a: oe.dot_product_attention(
      *a, is_causal=True, implementation="blockwise", block_k=16))(q, k, v)
  assert out.dtype == jnp.bfloat16
  ref = oe.dot_product_attention(*(a.astype(jnp.float32) for a in (q, k, v)), is_causal=True)
  np.testing.assert_allclose(np.asarray(out, np.float32), ref, atol=2e-2)


@pytest.mark.parametrize("normalizer", ["clipped:-0.1:1.0", "clipped1:-0.1:1.0", "sparsemax", "entmax:1.5"])
def test_reference_other_normalizers_match_naive_probabilities(normalizer):
  q, k, v = make_qkv(T=6, S=6, N=2, K=2)
  norm = oe.get_normalizer(normalizer)
  logits = np.einsum("btnh,bsnh->bnts", np.asarray(q), np.asarray(k)) / np.sqrt(8)
  p = np.asarray(norm(jnp.asarray(logits, jnp.float32)))
  ref = np.einsum("bnts,bsnh->btnh", p, np.asarray(v))
  np.testing.assert_allclose(oe.dot_product_attention(q, k, v, normalizer=normalizer), ref, atol=2e-5)
  with pytest.raises(ValueError, match="sink family"):
    oe.dot_product_attention(q, k, v, normalizer=normalizer, implementation="blockwise")


def test_attention_weights_shape_and_rows():
  q, k, _ = make_qkv()
  p = oe.attention_weights(q, k, normalizer="softmax1", is_causal=True)
  assert p.shape == (2, 4, 9, 11) and p.dtype == jnp.float32
  assert (np.asarray(p).sum(-1) < 1).all()


@pytest.mark.parametrize("call,match", [
    (lambda q, k, v: oe.dot_product_attention(q[0], k, v), "all have rank 4"),
    (lambda q, k, v: oe.dot_product_attention(q, k[:1], v[:1]), "batch"),
    (lambda q, k, v: oe.dot_product_attention(q, k[..., :4], v), "head_dim"),
    (lambda q, k, v: oe.dot_product_attention(q, k, v[:, :3]), "value shape"),
    (lambda q, k, v: oe.dot_product_attention(q[:, :, :3], k, v), "multiple of key/value heads"),
    (lambda q, k, v: oe.dot_product_attention(q, k, v, mask=jnp.ones((3, 9, 11), bool)), "mask"),
    (lambda q, k, v: oe.dot_product_attention(
        q, k, v, mask=jnp.zeros((9, 11)).at[0, 1].set(-jnp.inf)), "additive"),
    (lambda q, k, v: oe.dot_product_attention(q, k, v, sinks=jnp.zeros(3)), "sinks"),
    (lambda q, k, v: oe.dot_product_attention(q, k, v, normalizer="nope"), "valid forms"),
    (lambda q, k, v: oe.dot_product_attention(q, k, v, implementation="flash3"), "implementation"),
    (lambda q, k, v: oe.dot_product_attention(q, k, v, scale=-1.0), "scale"),
    (lambda q, k, v: oe.dot_product_attention(q.astype(jnp.int32), k, v), "query must be a floating"),
])
def test_bad_input_errors_name_the_argument(call, match):
  q, k, v = make_qkv()
  with pytest.raises((ValueError, TypeError), match=match):
    call(q, k, v)
