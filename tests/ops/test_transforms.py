"""Every public op under jax.jit, grad, vmap, checkpoint and jax.shard_map (check_vma=True).

tests/conftest.py gives the CPU backend 8 fake devices; the shard_map tests use a mesh of 4.
Each transformed call is compared with the plain call (or, for vmap, a Python loop over the batch).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, PartitionSpec as P

import outeffhop_jax as oe

B = 4  # one example per device of the mesh


def _mesh():
  assert len(jax.devices()) >= 4, "tests/conftest.py sets --xla_force_host_platform_device_count"
  return Mesh(np.array(jax.devices()[:4]), ("d",))


def _x(shape, seed=0):
  return jax.random.normal(jax.random.key(seed), shape, jnp.float32)


def _attn(impl, normalizer="softmax1"):
  mask = jnp.arange(6)[None, :] < jnp.array([6, 4, 5, 3])[:, None]  # key padding [B, S]

  def f(q, k, v, m):
    return oe.dot_product_attention(q, k, v, mask=m[:, None, None, :], is_causal=True,
                                    normalizer=normalizer, implementation=impl, block_k=4)
  return f, (_x((B, 5, 4, 8), 1), _x((B, 6, 2, 8), 2), _x((B, 6, 2, 8), 3), mask)


def _retrieve():
  mem = _x((7, 8), 5)
  mask = jnp.arange(7)[None, :] < jnp.array([7, 5, 6, 3])[:, None]  # [B, M]

  def f(q, m, memories):
    return oe.hopfield_retrieve(q, memories, beta=2.0, max_steps=3, tol=1e-3, mask=m)
  return f, (_x((B, 8), 4), mask, mem)


def _normalizers(x):
  """Every normalizer family in one function (one compilation): [B, 6] -> [B, 5, 6]."""
  return jnp.stack([oe.softmax1(x, axis=-1), oe.clipped_softmax1(x, gamma=-0.03, zeta=1.0),
                    oe.sparsemax(x, axis=-1), oe.entmax(x, alpha=1.5, axis=-1),
                    oe.softpick(x, axis=-1)], axis=1)


def _energy_and_update(q, m):
  """[B, d] -> [B, 1 + d]: the energy and one update step."""
  return jnp.concatenate([oe.hopfield_energy(q, m, beta=2.0)[:, None],
                          oe.hopfield_update(q, m, beta=2.0)], axis=1)


# name -> (fn, args); the first argument of each is batched over B and sharded over the mesh.
OPS = {
    "normalizers": (_normalizers, (_x((B, 6)),)),
    "attention_reference": _attn("reference"),
    "attention_blockwise": _attn("blockwise"),
    "hopfield_energy_update": (_energy_and_update, (_x((B, 8)), _x((7, 8), 5))),
    "hopfield_retrieve": _retrieve(),
}


def _loss(fn):
  return lambda *a: jnp.sum(fn(*a) ** 2)


def _float_argnums(args):
  return tuple(i for i, a in enumerate(args) if jnp.issubdtype(a.dtype, jnp.floating))


@pytest.mark.parametrize("name", sorted(OPS))
def test_jit_grad_vmap_checkpoint(name):
  """jit == eager; vmap over the batch (kept as an axis of 1 inside) == a loop over it; grad through
  jax.checkpoint == plain grad. One jit holds the transformed calls (one compilation per op)."""
  fn, args = OPS[name]
  batched = tuple(i == 0 or a.shape[:1] == (B,) for i, a in enumerate(args))
  argnums = _float_argnums(args)

  @jax.jit
  def transformed(*args):
    vm = jax.vmap(fn, in_axes=tuple(0 if b else None for b in batched))(
        *(a[:, None] if b else a for a, b in zip(args, batched)))
    looped = jnp.stack([fn(*(a[i:i + 1] if b else a for a, b in zip(args, batched)))
                        for i in range(B)])
    g = jax.grad(_loss(fn), argnums=argnums)(*args)
    g_ckpt = jax.grad(_loss(jax.checkpoint(fn)), argnums=argnums)(*args)
    return fn(*args), vm.reshape(looped.shape), looped, g, g_ckpt

  out, vm, looped, g, g_ckpt = transformed(*args)
  np.testing.assert_allclose(out, fn(*args), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(vm, looped, rtol=1e-5, atol=1e-6)
  for a, b in zip(g, g_ckpt):
    assert np.isfinite(np.asarray(a)).all()
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", sorted(OPS))
def test_shard_map_equals_unsharded(name):
  """Batch-sharded over 4 devices with the default check_vma=True: values and gradients equal."""
  fn, args = OPS[name]
  specs = tuple(P("d") if a.shape[:1] == (B,) else P() for a in args)
  sharded = jax.shard_map(fn, mesh=_mesh(), in_specs=specs, out_specs=P("d"))
  np.testing.assert_allclose(jax.jit(sharded)(*args), fn(*args), rtol=1e-5, atol=1e-6)
  argnums = _float_argnums(args)[:1]
  g = jax.grad(_loss(fn), argnums=argnums)(*args)
  g_sh = jax.jit(jax.grad(_loss(sharded), argnums=argnums))(*args)
  np.testing.assert_allclose(g_sh[0], g[0], rtol=1e-4, atol=1e-5)


def test_shard_map_retrieve_with_sharded_memories():
  """Memories that vary over the mesh (one memory bank per device) while the query does not: the
  scan carry must take the memories' mesh axes."""
  q, mems = _x((3, 8), 6), _x((4, 7, 8), 7)
  fn = lambda q, m: oe.hopfield_retrieve(q, m[0], beta=2.0, max_steps=2)[None]
  sharded = jax.shard_map(fn, mesh=_mesh(), in_specs=(P(), P("d")), out_specs=P("d"))
  want = jnp.stack([oe.hopfield_retrieve(q, m, beta=2.0, max_steps=2) for m in mems])
  np.testing.assert_allclose(jax.jit(sharded)(q, mems), want, rtol=1e-5, atol=1e-6)


def test_retrieve_memory_mask_equals_dropping_the_memories():
  q, mem = _x((2, 8), 8), _x((7, 8), 9)
  keep = jnp.array([True, False, True, True, False, True, True])
  got = oe.hopfield_retrieve(q, mem, beta=3.0, max_steps=3, mask=keep)
  want = oe.hopfield_retrieve(q, mem[np.asarray(keep)], beta=3.0, max_steps=3)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="mask"):
    oe.hopfield_retrieve(q, mem, beta=3.0, mask=jnp.ones((3, 7), bool))
