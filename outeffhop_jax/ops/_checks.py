"""Argument checks shared by the ops: each raises before any compute and names the argument."""
from __future__ import annotations

import jax.numpy as jnp


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


def check_positive(value, name: str) -> None:
  if isinstance(value, (int, float)) and not value > 0:
    raise ValueError(f"{name} must be > 0, got {value}")
