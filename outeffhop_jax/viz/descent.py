"""Energy along the retrieval iterates: E(x_0) >= E(x_1) >= ... for every normalizer (CCCP)."""
from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp
import numpy as np

from outeffhop_jax.viz._common import (DEFAULT_NORMALIZERS, check_betas, check_normalizers,
                                       display_name, energy, new_figure, retrieve)


def energy_descent(memories, queries, *, beta: float, normalizers: Sequence[str] = DEFAULT_NORMALIZERS,
                   steps: int = 10) -> np.ndarray:
  """Energies [S, steps + 1, n]: E(x_t) for each normalizer's own trajectory and energy."""
  normalizers = check_normalizers(normalizers)
  (beta,) = check_betas(beta)
  memories, queries = jnp.asarray(memories, jnp.float32), jnp.asarray(queries, jnp.float32)
  out = []
  for spec in normalizers:
    traj = retrieve(queries, memories, beta=beta, normalizer=spec, max_steps=steps,
                             return_trajectory=True)  # [T + 1, n, d]
    out.append(energy(traj, memories, beta=beta, normalizer=spec))  # vectorised over T, n
  return np.asarray(jnp.stack(out))


def descent_figure(energies, *, normalizers: Sequence[str], beta: float):
  """One panel per normalizer: E(x_t) vs t, one line per query."""
  energies = np.asarray(energies)
  normalizers = check_normalizers(normalizers)
  if energies.ndim != 3 or energies.shape[0] != len(normalizers):
    raise ValueError(f"energies must be [{len(normalizers)}, T + 1, n], got {energies.shape}")
  ncols = len(normalizers)
  fig = new_figure(3.3 * ncols, 3.0)
  axes = fig.subplots(1, ncols, squeeze=False)[0]
  fig.suptitle(f"Energy along retrieval iterates (beta={beta:g}): non-increasing", fontsize=10)
  steps = np.arange(energies.shape[1])
  for s, spec in enumerate(normalizers):
    axes[s].plot(steps, energies[s], "-", lw=1, alpha=0.8)
    axes[s].set_title(display_name(spec), fontsize=9)
    axes[s].set_xlabel("iteration t")
    axes[s].grid(alpha=0.3)
  axes[0].set_ylabel("energy E(x_t)")
  return fig
