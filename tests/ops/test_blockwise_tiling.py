"""The sink-family blockwise path's query x key tiling: values and gradients (q, k, v, sinks) against
the materialised "reference" attention with block sizes that do not divide T or S, T != S, GQA and
masks; the causal loops visit only the tiles that hold a visible (query, key) pair, counted
independently by brute force; bf16 stays finite; the tiled loops inside `jax.shard_map`."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import outeffhop_jax as oe
from outeffhop_jax.ops import blockwise

N, K, H = 4, 2, 8  # GQA: 2 query heads per key head


def _qkv(B, T, S, seed=0, dtype=jnp.float32):
  kq, kk, kv, kw = jax.random.split(jax.random.key(seed), 4)
  q = jax.random.normal(kq, (B, T, N, H)) * 2.0
  k, v = jax.random.normal(kk, (B, S, K, H)), jax.random.normal(kv, (B, S, K, H))
  w = jax.random.normal(kw, (B, T, N, H))
  return q.astype(dtype), k.astype(dtype), v.astype(dtype), w


def _mask(B, T, S):
  """Random [B, N, T, S] mask with one fully masked row (batch 1, head 0, query 2)."""
  m = np.random.RandomState(0).rand(B, N, T, S) > 0.3
  m[1, 0, 2] = False
  return jnp.asarray(m)


CASES = [  # (B, T, S, causal, block_q, block_k, mask, sinks: "learned" [N] or plain softmax -inf)
    (1, 13, 13, True, 4, 3, False, "learned"),  # self-attention, neither block divides T
    (2, 7, 17, True, 3, 5, False, "-inf"),      # T < S (causal top-left aligned: most keys hidden)
    (2, 13, 9, True, 5, 4, True, "-inf"),       # T > S, mask with a fully masked row
    (2, 7, 17, False, 3, 5, True, "learned"),   # not causal, every tile visited
]


def _value_and_grads(attn, q, k, v, sinks, w):
  """(out, d<out, w>/d(q, k, v, sinks)) in one compiled call."""
  def loss(q, k, v, s):
    out = attn(q, k, v, s)
    return jnp.vdot(out.astype(jnp.float32), w), out
  return jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3), has_aux=True))(q, k, v, sinks)


@pytest.mark.parametrize("B,T,S,causal,bq,bk,with_mask,sinks", CASES)
def test_tiled_values_and_gradients_match_reference(B, T, S, causal, bq, bk, with_mask, sinks):
  q, k, v, w = _qkv(B, T, S)
  mask = _mask(B, T, S) if with_mask else None
  sinks = jnp.linspace(-1.0, 1.0, N) if sinks == "learned" else jnp.full((N,), -jnp.inf)
  blk = lambda q, k, v, s: blockwise.blockwise_attention(q, k, v, s, mask=mask, causal=causal,
                                                        block_q=bq, block_k=bk)
  ref = lambda q, k, v, s: oe.dot_product_attention(q, k, v, mask=mask, is_causal=causal, sinks=s,
                                                    implementation="reference")
  g_blk, out_blk = _value_and_grads(blk, q, k, v, sinks, w)
  g_ref, out_ref = _value_and_grads(ref, q, k, v, sinks, w)
  np.testing.assert_allclose(out_blk, out_ref, atol=2e-6)
  if not np.isfinite(sinks).all():  # no d(sinks) to compare at -inf; the fully masked row is 0
    g_blk, g_ref = g_blk[:3], g_ref[:3]
    if with_mask:
      assert not np.asarray(out_blk)[1, 2, 0].any()
  for a, b in zip(g_blk, g_ref):
    assert np.isfinite(np.asarray(a)).all()
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)


def _visible_tiles(T, S, bq, bk, causal):
  """Brute force: the (query block, key block) tiles holding at least one visible pair."""
  visible = np.arange(S)[None, :] <= np.arange(T)[:, None] if causal else np.ones((T, S), bool)
  return sum(visible[i:i + bq, j:j + bk].any() for i in range(0, T, bq) for j in range(0, S, bk))


@pytest.mark.parametrize("T,S,bq,bk", [(32, 32, 4, 4), (13, 29, 5, 3)])
def test_causal_loops_skip_the_masked_tiles(T, S, bq, bk):
  """The loop bodies count their runs: forward and backward visit exactly the tiles with a visible
  pair (the triangle, nq (nq + 1) / 2 for square tiles), the non-causal call all nq * nk."""
  q, k, v, w = _qkv(1, T, S)
  sinks = jnp.zeros((N,))
  nq, nk = -(-T // bq), -(-S // bk)
  for causal in (True, False):
    @jax.jit
    def tiles(q, k, v, sinks, w, causal=causal):
      out, lse, fwd_tiles = blockwise._forward(q, k, v, sinks, None, causal, H ** -0.5, bq, bk)
      _, bwd_tiles = blockwise._backward(q, k, v, sinks, None, out, lse, w, causal, H ** -0.5, bq,
                                         bk)
      return fwd_tiles, bwd_tiles

    fwd_tiles, bwd_tiles = tiles(q, k, v, sinks, w)
    want = _visible_tiles(T, S, bq, bk, causal)
    assert int(fwd_tiles) == int(bwd_tiles) == want
    if not causal:
      assert want == nq * nk
    elif bq == bk and T == S and T % bq == 0:
      assert want == nq * (nq + 1) // 2
    else:
      assert want < 0.7 * nq * nk


def test_bf16_tiled_causal_is_finite_and_close():
  q, k, v, w = _qkv(2, 21, 21, seed=3, dtype=jnp.bfloat16)
  sinks = jnp.zeros((N,))
  blk = lambda q, k, v, s: blockwise.blockwise_attention(q, k, v, s, causal=True, block_q=8,
                                                        block_k=4)
  grads, out = _value_and_grads(blk, q, k, v, sinks, w)
  assert out.dtype == jnp.bfloat16
  ref = oe.dot_product_attention(*(x.astype(jnp.float32) for x in (q, k, v)), is_causal=True,
                                 sinks=sinks, implementation="reference")
  np.testing.assert_allclose(np.asarray(out, np.float32), ref, atol=3e-2)
  for g in grads:
    assert np.isfinite(np.asarray(g, np.float32)).all()


def test_tiled_loops_inside_shard_map_match_unsharded():
  """Batch sharded over 4 devices, several query and key blocks, causal, learned sinks."""
  mesh = jax.make_mesh((4,), ("d",), devices=jax.devices()[:4])
  q, k, v, _ = _qkv(4, 9, 11, seed=2)
  mask = jnp.asarray(np.arange(11) < np.array([11, 5, 9, 1])[:, None, None, None])  # [4, 1, 1, S]
  sinks = jnp.linspace(-1.0, 1.0, N)

  def fn(q, k, v, mask, sinks):
    return blockwise.blockwise_attention(q, k, v, sinks, mask=mask, causal=True, block_q=4,
                                         block_k=3)

  def local(q, k, v, mask, sinks):
    loss = lambda *a: jnp.sum(fn(*a) ** 2)
    return fn(q, k, v, mask, sinks), jax.grad(loss, argnums=(0, 1, 2, 4))(q, k, v, mask, sinks)

  want = jax.jit(local)(q, k, v, mask, sinks)
  args = tuple(jax.device_put(a, NamedSharding(mesh, P("d"))) for a in (q, k, v, mask))
  got = jax.jit(jax.shard_map(local, mesh=mesh, in_specs=(P("d"),) * 4 + (P(),),
                              out_specs=(P("d"), (P("d"), P("d"), P("d"), P()))))(*args, sinks)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("T,S", [(0, 5), (4, 0), (0, 0)])
def test_empty_queries_or_keys_give_zero_output_and_zero_gradients(T, S):
  """No (query, key) pair: an empty output, or rows over 0 keys (context 0, like fully masked
  rows); the gradients exist and are 0, as for the reference path."""
  q = jnp.ones((2, T, 4, 8))
  kv = jnp.ones((2, S, 2, 8))
  sinks = jnp.zeros(4)

  def f(q, k, v, s):
    return blockwise.blockwise_attention(q, k, v, s, causal=True).sum()

  out = blockwise.blockwise_attention(q, kv, kv, sinks, causal=True)
  assert out.shape == (2, T, 4, 8) and not np.any(np.asarray(out))
  grads = jax.grad(f, argnums=(0, 1, 2, 3))(q, kv, kv, sinks)
  for g, x in zip(grads, (q, kv, kv, sinks)):
    assert g.shape == x.shape and not np.any(np.asarray(g))
