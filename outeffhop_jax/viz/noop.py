"""No-op retrievals vs query similarity: OutEffHop returns ~0 for queries that match nothing.

Queries sweep from "unlike every memory" to "like every memory" along a = normalise(pinv(Xi) 1),
the direction with the same positive similarity to every memory:
    q = lam * a + sqrt(1 - lam^2) * w,   lam ~ U[-1, 1],  w a random unit vector orthogonal to a.
The x-axis is the query's best similarity max_mu <xi_mu, q> (a cosine for unit-norm memories);
a retrieval is a no-op when ||x_T|| < threshold * max_mu ||xi_mu||. Softmax and sparse normalizers
return a convex combination of memories, so only a sink (softmax1) can retrieve ~0.
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
class NoopResult:
  """Per query: best similarity [n]; per (beta, normalizer): retrieved norms [B, S, n]."""
  similarity: np.ndarray
  norms: np.ndarray
  betas: tuple[float, ...]
  normalizers: tuple[str, ...]
  threshold: float
  steps: int

  def is_noop(self) -> np.ndarray:
    return self.norms < self.threshold

  def binned(self, bins: int = 12):
    """(bin centres [k], no-op fraction [B, S, k], mean norm [B, S, k]); empty bins are NaN."""
    edges = np.linspace(self.similarity.min(), self.similarity.max(), bins + 1)
    which = np.clip(np.digitize(self.similarity, edges) - 1, 0, bins - 1)
    onehot = np.eye(bins)[which]  # [n, k]: bin membership, so both statistics are one matmul
    count = onehot.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
      frac = (self.is_noop() @ onehot) / count
      mean = (self.norms @ onehot) / count
    return 0.5 * (edges[1:] + edges[:-1]), frac, mean


def similarity_sweep(memories, num_queries: int, key):
  """Queries [n, d] from unlike-all to like-all (see module docstring)."""
  memories = np.asarray(memories, np.float64)
  a = np.linalg.pinv(memories) @ np.ones(len(memories))
  a = jnp.asarray(a / np.linalg.norm(a), jnp.float32)
  k_lam, k_w = jax.random.split(key)
  lam = jax.random.uniform(k_lam, (num_queries, 1), minval=-1.0, maxval=1.0)
  w = jax.random.normal(k_w, (num_queries, memories.shape[1]))
  w = w - (w @ a)[:, None] * a  # remove the component along a
  w = w / jnp.linalg.norm(w, axis=-1, keepdims=True)
  return lam * a + jnp.sqrt(1.0 - lam**2) * w


def noop_fraction(memories, *, betas: Sequence[float] = (4.0, 16.0, 64.0),
                  normalizers: Sequence[str] = DEFAULT_NORMALIZERS, num_queries: int = 1000,
                  steps: int = 1, threshold: float = 0.1, seed: int = 0) -> NoopResult:
  """Retrieves every sweep query for each (beta, normalizer) and records ||x_T|| (relative)."""
  normalizers, betas = check_normalizers(normalizers), check_betas(betas)
  memories = jnp.asarray(memories, jnp.float32)
  queries = similarity_sweep(memories, num_queries, jax.random.PRNGKey(seed))
  scale = float(jnp.linalg.norm(memories, axis=-1).max())
  norms = np.stack([np.stack([
      np.asarray(jnp.linalg.norm(retrieve(queries, memories, beta=b, normalizer=s,
                                                   max_steps=steps), axis=-1)) / scale
      for s in normalizers]) for b in betas])
  similarity = np.asarray(jnp.max(queries @ memories.T, axis=-1))
  return NoopResult(similarity, norms, betas, normalizers, threshold, steps)


def noop_figure(result: NoopResult, bins: int = 12):
  """Columns: betas. Top: fraction of no-op retrievals; bottom: mean ||x_T|| / max ||xi||."""
  centres, frac, mean = result.binned(bins)
  ncols = len(result.betas)
  fig = new_figure(3.6 * ncols, 5.4)
  axes = fig.subplots(2, ncols, squeeze=False, sharex=True)
  fig.suptitle(f"No-op retrievals vs best query similarity ({result.steps} step(s); no-op: "
               f"||x_T|| < {result.threshold:g} max||xi||)", fontsize=10)
  for b, beta in enumerate(result.betas):
    for s, spec in enumerate(result.normalizers):
      axes[0, b].plot(centres, frac[b, s], "o-", ms=3, label=display_name(spec))
      axes[1, b].plot(centres, mean[b, s], "o-", ms=3, label=display_name(spec))
    axes[0, b].set_title(f"beta={beta:g}", fontsize=9)
    axes[0, b].set_ylim(-0.05, 1.05)
    axes[1, b].set_xlabel("max_mu <xi_mu, q>")
    for ax in axes[:, b]:
      ax.axvline(0.0, color="gray", lw=0.8, ls=":")
      ax.grid(alpha=0.3)
  axes[0, 0].set_ylabel("fraction of no-op retrievals")
  axes[1, 0].set_ylabel("mean ||x_T|| / max ||xi||")
  axes[0, 0].legend(fontsize=7)
  return fig
