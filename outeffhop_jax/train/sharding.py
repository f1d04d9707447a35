"""One device mesh (data, fsdp, tensor) and the table that maps logical axis names onto it.

Models name every parameter dimension logically (`embed`, `heads`, `kv`, `mlp`, `vocab`, ...,
attached with `nnx.with_partitioning`); activations are named the same way (`batch`, `length`,
`act_embed`, ...). `RULES` is the single place that says which mesh axes each name is split over:
  data   -- pure data parallelism: parameters replicated, the batch split;
  fsdp   -- the batch split and parameters' `embed` dimension sharded (ZeRO-3 style);
  tensor -- Megatron-style: heads, MLP hidden units and the vocabulary split.
A dimension whose size the mesh axes do not divide is left unsplit (replicated) rather than failing,
so tiny models run on any mesh; `shard_report` lists what was unsplit.
"""
from __future__ import annotations

import logging
import math
from typing import Any, Iterable, Sequence

import jax
import numpy as np
from flax import nnx
from jax.experimental import mesh_utils
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

MESH_AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")

# logical name -> mesh axes (a str, a tuple of str, or None = replicated).
RULES: tuple[tuple[str, Any], ...] = (
    # parameters
    ("embed", "fsdp"),
    ("vocab", "tensor"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("kv", None),
    ("mlp", "tensor"),
    ("positions", None),
    ("layers", None),
    ("classes", None),
    ("patch", None),
    ("channels", None),
    ("norm", None),
    # activations
    ("batch", BATCH_AXES),
    ("length", None),
    ("act_embed", None),
    ("act_heads", "tensor"),
    ("act_mlp", "tensor"),
    ("act_vocab", "tensor"),
)


def make_mesh(shape: Sequence[int], devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A (data, fsdp, tensor) mesh over `devices` (default: all); one -1 entry takes the rest.

  Axis types are Auto: sharding is propagated by the compiler from the jit in/out shardings, so the
  models need no explicit-sharding annotations on every op.
  """
  devices = list(jax.devices() if devices is None else devices)
  shape = resolve_mesh_shape(shape, len(devices))
  # mesh_utils orders devices so the innermost axis (tensor) gets the fastest links on TPU/GPU.
  try:
    grid = mesh_utils.create_device_mesh(shape, devices=devices, allow_split_physical_axes=True)
  except (ValueError, AssertionError, NotImplementedError):
    grid = np.asarray(devices).reshape(shape)
  return Mesh(grid, MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES))


def resolve_mesh_shape(shape: Sequence[int], num_devices: int) -> tuple[int, ...]:
  """Fills the single -1 in `shape`; ValueError (naming config.mesh) if the product is wrong."""
  shape = [int(s) for s in shape]
  if len(shape) != len(MESH_AXES):
    raise ValueError(f"config.mesh: need {len(MESH_AXES)} sizes {MESH_AXES}, got {shape}")
  if shape.count(-1) > 1 or any(s == 0 or s < -1 for s in shape):
    raise ValueError(f"config.mesh: sizes must be positive with at most one -1, got {shape}")
  known = math.prod(s for s in shape if s != -1)
  if -1 in shape:
    if num_devices % known:
      raise ValueError(f"config.mesh {dict(zip(MESH_AXES, shape))}: {known} does not divide the "
                       f"{num_devices} devices")
    shape[shape.index(-1)] = num_devices // known
  if math.prod(shape) != num_devices:
    raise ValueError(f"config.mesh {dict(zip(MESH_AXES, shape))}: product {math.prod(shape)} != "
                     f"{num_devices} devices")
  return tuple(shape)


def logical_to_spec(names: Iterable[str | None] | None, shape: Sequence[int] | None, mesh: Mesh,
                    rules=RULES, unsplit: list | None = None) -> P:
  """PartitionSpec for one array from its logical names; drops axes that don't divide `shape`.

  Each mesh axis is used at most once per array (first dimension wins).
  """
  if not names:
    return P()
  table = dict(rules)
  used, spec = set(), []
  for dim, name in enumerate(names):
    target = table.get(name) if name is not None else None
    if name is not None and name not in table:
      _warn_unknown(name)
    axes = (target,) if isinstance(target, str) else tuple(target or ())
    axes = tuple(a for a in axes if a not in used and mesh.shape.get(a, 1) > 1)
    if axes and shape is not None:
      size = math.prod(mesh.shape[a] for a in axes)
      if shape[dim] % size:
        if unsplit is not None:
          unsplit.append((name, shape[dim], axes))
        axes = ()
    used.update(axes)
    spec.append(None if not axes else axes[0] if len(axes) == 1 else axes)
  return P(*spec)


_warned: set[str] = set()


def _warn_unknown(name: str):
  if name not in _warned:
    _warned.add(name)
    logging.warning("logical axis %r has no sharding rule; it stays replicated", name)


def _logical_names(variable: nnx.Variable):
  names = variable.get_metadata().get("out_sharding")
  return tuple(names) if names else None


def state_shardings(state: nnx.State, mesh: Mesh, rules=RULES, unsplit: list | None = None):
  """NamedShardings for an nnx.State (abstract or concrete), from each Variable's logical names."""

  def one(variable):
    if not isinstance(variable, nnx.Variable):
      return NamedSharding(mesh, P())
    spec = logical_to_spec(_logical_names(variable), np.shape(variable.get_value()), mesh, rules,
                           unsplit)
    return variable.replace(NamedSharding(mesh, spec))

  return jax.tree.map(one, state, is_leaf=lambda x: isinstance(x, nnx.Variable))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh, ndim: int = 1) -> NamedSharding:
  """Examples split over (data, fsdp); other dimensions whole."""
  return NamedSharding(mesh, P(BATCH_AXES, *([None] * (ndim - 1))))


def shard_report(unsplit: list) -> str:
  if not unsplit:
    return "all annotated dimensions split as the rules say"
  seen = sorted({f"{n}={s} (not divisible over {'x'.join(a)})" for n, s, a in unsplit})
  return "left unsplit: " + ", ".join(seen)
