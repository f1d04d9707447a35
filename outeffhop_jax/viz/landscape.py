"""Energy landscapes on a plane (contour or surface), memories and retrieval trajectories overlaid.

Panels: one row per beta, one column per normalizer. Contour panels draw the energy grid itself with
`pcolormesh` (Gouraud shading, so the drawn vertex values are exactly `EnergyGrid.energy`) plus level
lines. For d > 2, memories and trajectories are drawn as their orthogonal projections onto the plane;
the iterates generally leave the plane, so they need not follow the drawn (in-plane) contours.
"""
from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp
import numpy as np

from outeffhop_jax.viz._common import (DEFAULT_NORMALIZERS, check_betas, check_normalizers,
                                       display_name, energy, new_figure, retrieve)
from outeffhop_jax.viz.plane import EnergyGrid, energy_grid, plane_basis, project


def check_queries(queries, memories) -> np.ndarray | None:
  """Queries as [n, d] float32 (a single [d] query is promoted); clear error on a d mismatch."""
  if queries is None:
    return None
  queries = np.asarray(queries, np.float32)
  queries = queries[None] if queries.ndim == 1 else queries
  dim = np.shape(memories)[-1]
  if queries.ndim != 2 or queries.shape[-1] != dim:
    raise ValueError(f"queries must have shape [n, {dim}] to match memories of dim {dim}, "
                     f"got {queries.shape}")
  return queries


def trajectories(queries, memories, *, beta, normalizer, steps: int) -> np.ndarray:
  """Retrieval iterates [steps + 1, n, d] (row 0 is the query) from `ops.hopfield_retrieve`."""
  return np.asarray(retrieve(jnp.asarray(queries), jnp.asarray(memories, jnp.float32),
                                      beta=beta, normalizer=normalizer, max_steps=steps,
                                      return_trajectory=True))


def draw_contour(ax, grid: EnergyGrid, memories, traj=None, *, normalizer: str, levels: int = 18,
                 colorbar: bool = True):
  """Draws one contour panel; returns the QuadMesh whose array is `grid.energy`."""
  mesh = ax.pcolormesh(grid.u, grid.v, grid.energy, shading="gouraud", cmap="viridis")
  ax.contour(grid.u, grid.v, grid.energy, levels=levels, colors="white", linewidths=0.5, alpha=0.6)
  if colorbar:
    ax.figure.colorbar(mesh, ax=ax, shrink=0.85, label="energy")
  mem = project(memories, grid.basis)
  ax.scatter(mem[:, 0], mem[:, 1], marker="*", s=140, c="red", edgecolors="k", zorder=4,
             label="memories")
  if normalizer.startswith("softmax1"):
    # OutEffHop's extra memory: the origin with energy contribution exp(0) = 1 in the partition sum.
    ax.scatter([0], [0], marker="D", s=45, c="white", edgecolors="k", zorder=4, label="no-op (origin)")
  if traj is not None:
    path = project(traj, grid.basis)  # [T + 1, n, 2]
    for k in range(path.shape[1]):  # a handful of lines to draw, not data
      ax.plot(path[:, k, 0], path[:, k, 1], "-", color="orange", lw=1.2, zorder=3)
    ax.scatter(path[0, :, 0], path[0, :, 1], marker="o", s=18, facecolors="none", edgecolors="orange",
               zorder=5, label="query")
    ax.scatter(path[-1, :, 0], path[-1, :, 1], marker="x", s=28, c="orange", zorder=5,
               label="retrieved")
  ax.set_aspect("equal")
  ax.set_xlabel("u (plane axis 1)")
  ax.set_ylabel("v (plane axis 2)")
  return mesh


def draw_surface(ax, grid: EnergyGrid, memories, *, beta, normalizer):
  """Draws one 3-D surface panel with the memories' projections at their in-plane energies."""
  surf = ax.plot_surface(grid.u, grid.v, grid.energy, cmap="viridis", linewidth=0, antialiased=True,
                         alpha=0.9, rcount=60, ccount=60)
  mem = project(memories, grid.basis)
  mem_e = energy(jnp.asarray(mem @ grid.basis), jnp.asarray(memories, jnp.float32),
                          beta=beta, normalizer=normalizer)
  ax.scatter(mem[:, 0], mem[:, 1], np.asarray(mem_e), marker="*", s=80, c="red", depthshade=False)
  ax.set_xlabel("u")
  ax.set_ylabel("v")
  ax.set_zlabel("energy")
  return surf


def landscape_figure(memories, queries=None, *, normalizers: Sequence[str] = DEFAULT_NORMALIZERS,
                     betas: Sequence[float] = (1.0, 4.0, 16.0), kind: str = "contour",
                     plane: str = "pca", pair: tuple[int, int] = (0, 1), steps: int = 6,
                     resolution: int = 101, extent: float | None = None):
  """Grid of landscapes: rows = betas, columns = normalizers.

  Args:
    memories: [M, d] stored patterns. queries: optional [n, d] starting points of the trajectories
      (contour only). kind: "contour" or "surface". plane/pair: see `plane.plane_basis` (ignored
      for d = 2). steps: retrieval iterations drawn. resolution/extent: see `plane.energy_grid`.
  Returns:
    A matplotlib Figure.
  """
  normalizers, betas = check_normalizers(normalizers), check_betas(betas)
  if kind not in ("contour", "surface"):
    raise ValueError(f"unknown kind {kind!r}; use 'contour' or 'surface'")
  memories = np.asarray(memories, np.float32)
  basis = plane_basis(memories, method=plane, pair=pair)
  queries = check_queries(queries, memories)
  nrows, ncols = len(betas), len(normalizers)
  fig = new_figure(3.6 * ncols, 3.2 * nrows)
  where = f"d = {memories.shape[1]}" + ("" if memories.shape[1] == 2 else f", plane: {plane}")
  fig.suptitle(f"Hopfield energy landscapes ({where}); rows: beta, columns: normalizer")
  for r, beta in enumerate(betas):
    for c, spec in enumerate(normalizers):
      grid = energy_grid(memories, beta=beta, normalizer=spec, basis=basis, extent=extent,
                         resolution=resolution)
      title = f"{display_name(spec)}, beta={beta:g}"
      if kind == "surface":
        ax = fig.add_subplot(nrows, ncols, r * ncols + c + 1, projection="3d")
        draw_surface(ax, grid, memories, beta=beta, normalizer=spec)
      else:
        ax = fig.add_subplot(nrows, ncols, r * ncols + c + 1)
        traj = None if queries is None else trajectories(queries, memories, beta=beta,
                                                         normalizer=spec, steps=steps)
        draw_contour(ax, grid, memories, traj, normalizer=spec)
        if r == 0 and (spec == "softmax1" or c == 0 and "softmax1" not in normalizers):
          ax.legend(loc="lower left", fontsize=6, framealpha=0.7)  # the panel with the no-op marker
      ax.set_title(title, fontsize=9)
  return fig
