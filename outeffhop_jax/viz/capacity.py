"""Capacity curves: retrieval error vs the number of stored memories M, per beta and normalizer.

Memories are M random unit vectors in d dimensions (the first M of one draw, so curves for growing
M share patterns). Each query is a stored memory plus Gaussian noise, renormalised to unit norm:
q = normalise(xi_k + noise * ||xi_k|| g / sqrt(d)). The error of one query is ||x_T - xi_k|| after
`steps` updates (memories have unit norm, so it is relative); we report its mean over the queries.
Dense and OutEffHop share the exponential-capacity picture: separation beta * (1 - max cos) must
outgrow log M; OutEffHop's no-op adds a single extra term to the partition sum, so its curve tracks
the dense one except where every similarity is low.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from outeffhop_jax.viz._common import (DEFAULT_NORMALIZERS, check_betas, check_normalizers,
                                       display_name, new_figure, retrieve)


@dataclasses.dataclass(frozen=True)
class CapacityResult:
  """error[b, s, m]: mean ||x_T - xi_target|| for betas[b], normalizers[s], num_memories[m]."""
  num_memories: tuple[int, ...]
  betas: tuple[float, ...]
  normalizers: tuple[str, ...]
  error: np.ndarray
  dim: int
  noise: float
  steps: int


def unit_rows(x):
  return x / jnp.linalg.norm(x, axis=-1, keepdims=True)


def capacity_curves(*, dim: int = 16, num_memories: Sequence[int] = (4, 16, 64, 256),
                    betas: Sequence[float] = (2.0, 8.0, 32.0),
                    normalizers: Sequence[str] = DEFAULT_NORMALIZERS, num_queries: int = 64,
                    noise: float = 0.5, steps: int = 3, seed: int = 0) -> CapacityResult:
  """Runs the sweep; one batched retrieval of all queries per (M, beta, normalizer) setting."""
  normalizers, betas = check_normalizers(normalizers), check_betas(betas)
  num_memories = tuple(int(m) for m in num_memories)
  if not num_memories or min(num_memories) < 1:
    raise ValueError(f"num_memories must be positive ints, got {num_memories}")
  if dim < 2 or num_queries < 1 or steps < 1:
    raise ValueError(f"need dim >= 2, num_queries >= 1, steps >= 1; got {dim}, {num_queries}, {steps}")
  k_mem, k_tgt, k_noise = jax.random.split(jax.random.PRNGKey(seed), 3)
  all_memories = unit_rows(jax.random.normal(k_mem, (max(num_memories), dim)))
  noise_dirs = jax.random.normal(k_noise, (num_queries, dim)) / np.sqrt(dim)
  error = np.zeros((len(betas), len(normalizers), len(num_memories)), np.float32)
  for m, num in enumerate(num_memories):
    memories = all_memories[:num]
    targets = memories[jax.random.randint(k_tgt, (num_queries,), 0, num)]
    queries = unit_rows(targets + noise * noise_dirs)
    for b, beta in enumerate(betas):
      for s, spec in enumerate(normalizers):
        out = retrieve(queries, memories, beta=beta, normalizer=spec, max_steps=steps)
        error[b, s, m] = float(jnp.mean(jnp.linalg.norm(out - targets, axis=-1)))
  return CapacityResult(num_memories, betas, normalizers, error, dim, noise, steps)


def capacity_figure(result: CapacityResult):
  """One panel per normalizer: mean retrieval error vs M (log scale), one line per beta."""
  ncols = len(result.normalizers)
  fig = new_figure(3.4 * ncols, 3.2)
  axes = fig.subplots(1, ncols, squeeze=False, sharey=True)[0]
  fig.suptitle(f"Capacity: random unit memories in d={result.dim}, queries = memory + noise "
               f"{result.noise:g}, {result.steps} step(s)", fontsize=10)
  for s, spec in enumerate(result.normalizers):
    ax = axes[s]
    for b, beta in enumerate(result.betas):
      ax.plot(result.num_memories, result.error[b, s], "o-", ms=3, label=f"beta={beta:g}")
    ax.set_xscale("log", base=2)
    ax.set_title(display_name(spec), fontsize=9)
    ax.set_xlabel("number of memories M")
    ax.grid(alpha=0.3)
  axes[0].set_ylabel("mean ||x_T - target||")
  axes[0].legend(fontsize=7)
  return fig
