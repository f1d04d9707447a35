"""Argument checks shared by the ops: each raises before any compute and names the argument."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def normalize_axis(axis, ndim: int, name: str = "axis") -> int:
  if not isinstance(axis, int) or isinstance(axis, bool):
    raise TypeError(f"{name} must be an int, got {type(axis).__name__}")
  if not -ndim <= axis < ndim:
    raise ValueError(f"{name}={axis} is out of range for an array of rank {ndim}")
  return axis % ndim


def check_floating(x, name: str) -> None:
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise TypeError(f"{name} must be a floating-point array, got dtype {x.dtype}")


def check_broadcastable(shape, target, name: str, target_name: str) -> None:
  shape, target = tuple(shape), tuple(target)
  ok = len(shape) <= len(target) and all(
      s in (1, t) for s, t in zip(shape[::-1], target[::-1]))
  if not ok:
    raise ValueError(f"{name} of shape {shape} is not broadcastable to {target_name} {target}")


def check_rank(x, rank: int, name: str, layout: str) -> None:
  if x.ndim != rank:
    raise ValueError(f"{name} must have rank {rank} ({layout}), got shape {tuple(x.shape)}")


def check_size(value, name: str, *, allow_zero: bool = False) -> None:
  """A size (layers, heads, widths, counts) must be an int > 0 (>= 0 with allow_zero)."""
  low = 0 if allow_zero else 1
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
    raise ValueError(f"{name} must be an int {'>= 0' if allow_zero else '> 0'}, got {value!r}")


def concrete_values(value):
  """`value` as a float64 NumPy array when its values are known now (a Python / NumPy number or
  array, a jax.Array outside tracing); None for a tracer (under jit / grad / vmap), whose values
  are unknown until run time."""
  if value is None or isinstance(value, jax.core.Tracer):
    return None
  if isinstance(value, jax.Array) and not value.is_fully_addressable:
    return None  # a multi-host global array: this process cannot read all of it
  try:
    return np.asarray(jax.device_get(value), dtype=np.float64)
  except (TypeError, ValueError):
    return None


def check_param(value, name: str, ok, requirement: str) -> None:
  """Raises ValueError "{name} must be {requirement}, got ..." unless `ok(values)` holds for every
  concrete value (NaN fails any comparison, so a NaN is refused by every `ok` written as a range).
  Traced values are not checked (see `concrete_values`)."""
  v = concrete_values(value)
  if v is None or v.size == 0:
    return
  with np.errstate(invalid="ignore"):
    good = np.broadcast_to(ok(v), v.shape)
  if not good.all():
    bad = float(v[~good].ravel()[0])
    got = repr(float(v)) if v.ndim == 0 else f"an array of shape {v.shape} holding {bad!r}"
    raise ValueError(f"{name} must be {requirement}, got {got}")


def as_bool_mask(mask, name: str = "mask"):
  """The library's one mask rule: returns `mask` as a boolean array (True = attend / valid).

  - bool: used as is.
  - integer / float: Flax's rule, non-zero = attend (so 0/1 masks and `flax.nnx.make_causal_mask`
    output work unchanged).
  - an additive mask (0 for attend, -inf or a large negative number for masked) would be inverted by
    that rule, so a concrete float mask holding any negative or non-finite value is refused with a
    message saying how to convert it. Under `jax.jit` the values are not known: a traced numeric mask
    follows the non-zero rule without that check.
  """
  if mask is None:
    return None
  mask = jnp.asarray(mask) if not isinstance(mask, jax.Array) else mask
  if mask.dtype == jnp.bool_:
    return mask
  if not (jnp.issubdtype(mask.dtype, jnp.integer) or jnp.issubdtype(mask.dtype, jnp.floating)):
    raise TypeError(f"{name} must be boolean (True = attend) or numeric (non-zero = attend), "
                    f"got dtype {mask.dtype}")
  if not isinstance(mask, jax.core.Tracer) and mask.size:
    values = np.asarray(jax.device_get(mask))
    if not np.all(np.isfinite(values)) or np.min(values) < 0:
      raise ValueError(
          f"{name} looks like an additive mask (it holds negative or non-finite values, e.g. "
          f"0 / -inf); this library takes boolean masks (True = attend) or 0/1 masks. Convert "
          f"with `{name} = additive_mask == 0` (or `additive_mask > -1e4`), or pass the additive "
          f"values as `bias=` where the function has one")
  return mask != 0


def varying_axes(x) -> set:
  """The mesh axes `x` varies over inside `jax.shard_map` (empty outside)."""
  aval = jax.typeof(x)
  vma = getattr(aval, "vma", None)  # older jax; newer jax keeps it in manual_axis_type.varying
  if vma is None:
    vma = getattr(getattr(aval, "manual_axis_type", None), "varying", ())
  return set(vma or ())


def vary_like(x, *refs):
  """x marked as varying over every mesh axis any of `refs` varies over (inside `jax.shard_map`
  with check_vma=True a scan carry must keep one type; a no-op outside shard_map)."""
  axes = set()
  for r in refs:
    if r is not None:
      axes |= varying_axes(r)
  missing = tuple(sorted(axes - varying_axes(x)))
  return jax.lax.pcast(x, missing, to="varying") if missing else x
