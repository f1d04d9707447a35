"""Parameter creation with logical axis names (read back with `nnx.get_partition_spec`).

Every parameter of `nn` and `models` is created through `partitioned`, so the training code can map
the logical names (embed, heads, kv, mlp, vocab, ...) onto mesh axes with one rules table. Eager
sharding is off: modules build with or without a mesh, and sharding is applied by the caller.
"""
from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

Axes = tuple[str | None, ...]

normal = nnx.initializers.normal
zeros = nnx.initializers.zeros_init()
ones = nnx.initializers.ones_init()


def partitioned(init, axes: Axes):
  """`init` whose value carries logical axis names `axes` (one per dimension)."""
  return nnx.with_partitioning(init, tuple(axes), eager_sharding=False)


def param(rngs: nnx.Rngs, init, shape, axes: Axes, dtype=jnp.float32) -> nnx.Param:
  """A `nnx.Param` of `shape` drawn from `init`, annotated with `axes`."""
  if len(axes) != len(shape):
    raise ValueError(f"axes {axes} must name each of the {len(shape)} dimensions of {shape}")
  return nnx.Param(partitioned(init, axes)(rngs.params(), tuple(shape), dtype))


def as_dtype(dtype):
  """A jnp dtype from a dtype or its name ("float32", "bfloat16"); None passes through."""
  return None if dtype is None else jnp.dtype(dtype)
