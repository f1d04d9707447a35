"""The blockwise paths' hand-written backward and their use inside shard_map.

Elementwise-family blockwise attention (custom_vjp, scores recomputed per key block) against
jax.grad through a materialised reference (scores -> registry normalizer -> P V); both blockwise
scans inside `jax.shard_map` (check_vma=True) on 4 of the fake CPU devices against the unsharded
call."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import outeffhop_jax as oe
from outeffhop_jax.ops import blockwise, blockwise_alternatives

B, T, S, N, K, H = 2, 6, 11, 4, 2, 8  # GQA, T != S, S not a multiple of the block
SPECS = ["sigmoid", "sigmoid:-1.5", "softplus", "stablemax", "softpick"]


def _qkv(q_scale=2.0):
  kq, kk, kv = jax.random.split(jax.random.key(0), 3)
  return (jax.random.normal(kq, (B, T, N, H)) * q_scale, jax.random.normal(kk, (B, S, K, H)),
          jax.random.normal(kv, (B, S, K, H)))


def _mask():
  # batch 1: padded to 5 keys; row 0 of batch 1 head 0 fully masked
  m = np.broadcast_to(np.arange(S) < np.array([S, 5])[:, None, None, None], (B, N, T, S)).copy()
  m[1, 0, 0] = False
  return jnp.asarray(m)


def _reference(q, k, v, spec, mask, causal):
  """Materialised scores [B, N, T, S] through the registry normalizer; K heads repeated for GQA."""
  kr, vr = jnp.repeat(k, N // K, axis=2), jnp.repeat(v, N // K, axis=2)
  s = jnp.einsum("btnh,bsnh->bnts", q, kr) * H ** -0.5
  valid = mask if mask is not None else jnp.ones((B, N, T, S), bool)
  if causal:
    valid = jnp.logical_and(valid, jnp.arange(S)[None, :] <= jnp.arange(T)[:, None])
  p = oe.get_normalizer(spec)(s, axis=-1, where=valid)
  return jnp.einsum("bnts,bsnh->btnh", p, vr)


@pytest.mark.parametrize("spec", SPECS)
def test_elementwise_blockwise_backward_matches_reference_gradients(spec):
  q, k, v = _qkv()
  w = jax.random.normal(jax.random.key(1), (B, T, N, H))
  norm = oe.get_normalizer(spec)
  for mask, causal in [(None, False), (_mask(), True)]:
    blk = lambda q, k, v: jnp.vdot(blockwise_alternatives.blockwise_alternative_attention(
        q, k, v, norm, mask=mask, causal=causal, block_k=4), w)
    ref = lambda q, k, v: jnp.vdot(_reference(q, k, v, spec, mask, causal), w)
    g_blk = jax.jit(jax.grad(blk, argnums=(0, 1, 2)))(q, k, v)
    g_ref = jax.grad(ref, argnums=(0, 1, 2))(q, k, v)
    for a, b in zip(g_blk, g_ref):
      assert np.isfinite(np.asarray(a)).all()
      np.testing.assert_allclose(a, b, atol=2e-5, rtol=2e-4)


def test_blockwise_scans_inside_shard_map_match_unsharded():
  """Batch sharded over 4 devices (the mesh axis varies in q, k, v, mask): forward and gradients."""
  mesh = jax.make_mesh((4,), ("d",), devices=jax.devices()[:4])
  kq, kk, kv = jax.random.split(jax.random.key(2), 3)
  q = jax.random.normal(kq, (4, T, N, H))
  k, v = jax.random.normal(kk, (4, S, K, H)), jax.random.normal(kv, (4, S, K, H))
  mask = jnp.asarray(np.arange(S) < np.array([S, 5, 9, 1])[:, None, None, None])  # [4, 1, 1, S]
  sinks = jnp.linspace(-1.0, 1.0, N)
  softpick = oe.get_normalizer("softpick")

  def sink_fn(q, k, v, mask):
    return blockwise.blockwise_attention(q, k, v, sinks, mask=mask, causal=True, block_k=4)

  def alt_fn(q, k, v, mask):
    return blockwise_alternatives.blockwise_alternative_attention(q, k, v, softpick, mask=mask,
                                                                  causal=True, block_k=4)

  args = tuple(jax.device_put(a, NamedSharding(mesh, P("d"))) for a in (q, k, v, mask))
  for fn in (sink_fn, alt_fn):
    loss = lambda q, k, v, mask, fn=fn: jnp.sum(fn(q, k, v, mask) ** 2)
    want = fn(q, k, v, mask), jax.grad(loss, argnums=(0, 1, 2))(q, k, v, mask)

    def local(q, k, v, mask, fn=fn, loss=loss):
      return fn(q, k, v, mask), jax.grad(loss, argnums=(0, 1, 2))(q, k, v, mask)

    got = jax.jit(jax.shard_map(local, mesh=mesh, in_specs=P("d"), out_specs=P("d")))(*args)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
      np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)
