"""Forward passes that only update statistics (calibration), one compiled program per input shape."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx


@functools.partial(jax.jit, static_argnums=(0, 1))
def _pass(graphdef, collected, stats, rest, inputs):
  model = nnx.merge(graphdef, stats, rest)
  model(inputs)
  return nnx.state(model, collected)


def collect_stats(model: nnx.Module, collected: type[nnx.Variable], batches_inputs) -> int:
  """Runs model(inputs) for every batch, keeping only the updates of the `collected` variables
  (e.g. activation ranges); everything else is read, never written. Returns the batch count.

  The statistics travel between batches as host arrays and the weights go in unchanged, so every
  batch of one shape reuses one program: an nnx.jit of the whole model hands the state back with
  another placement than it went in with, and the second batch compiled the model again.
  """
  graphdef, stats, rest = nnx.split(model, collected, ...)
  stats = jax.device_get(stats)
  n = 0
  for inputs in batches_inputs:
    stats = jax.device_get(_pass(graphdef, collected, stats, rest, jnp.asarray(inputs)))
    n += 1
  nnx.update(model, jax.tree.map(jnp.asarray, stats))
  return n
