"""Side-by-side timing helpers for the benchmark scripts: interleaved repetitions, median times."""
from __future__ import annotations

import platform
import statistics
import time

import jax


def block(x):
  return jax.tree.map(lambda a: a.block_until_ready() if hasattr(a, "block_until_ready") else a, x)


def interleaved(fns: dict, args: dict, repeats: int = 7, warmup: int = 1) -> dict:
  """Runs each fn(*args[name]) in turn, `repeats` rounds; returns {name: median seconds}."""
  for name, fn in fns.items():
    for _ in range(warmup):
      block(fn(*args[name]))
  times = {name: [] for name in fns}
  for _ in range(repeats):
    for name, fn in fns.items():
      t0 = time.perf_counter()
      block(fn(*args[name]))
      times[name].append(time.perf_counter() - t0)
  return {name: statistics.median(ts) for name, ts in times.items()}


def fwd_bwd(fn):
  """jit(value_and_grad) of <fn(x), w>: the cotangent w makes the backward a full vector-Jacobian
  product, as inside attention."""
  import jax.numpy as jnp

  return jax.jit(jax.value_and_grad(lambda x, w: jnp.vdot(fn(x), w)))


def machine() -> str:
  dev = jax.devices()[0]
  return f"{platform.processor() or platform.machine()}, {jax.device_count()}x {dev.device_kind}, jax {jax.__version__}"
