"""A 2-D plane through the origin of pattern space, and the Hopfield energy evaluated on a grid in it.

The plane always contains the origin, where OutEffHop's zero-energy "no-op" memory sits. For d = 2 it
is the space itself; otherwise it is spanned by
  "memories": two chosen memories (Gram-Schmidt, so both lie exactly in the plane), or
  "pca":      the top-2 right singular vectors of Xi, i.e. the best 2-D subspace through the origin
              in least squares (the usual top-2 principal directions when Xi is centred).
A point with plane coordinates (u, v) is x = u * basis[0] + v * basis[1].
"""
from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from outeffhop_jax.viz._common import check_normalizers, energy


@dataclasses.dataclass(frozen=True)
class EnergyGrid:
  """Energy sampled on a plane: E[i, j] = hopfield_energy(u[i, j] b0 + v[i, j] b1).

  Attributes:
    u, v: plane coordinates [R, R] (meshgrid, "xy" indexing: u varies along axis 1).
    energy: [R, R] energies at those points.
    basis: [2, d] orthonormal rows b0, b1.
  """
  u: np.ndarray
  v: np.ndarray
  energy: np.ndarray
  basis: np.ndarray

  def points(self) -> np.ndarray:
    """The grid points in pattern space, [R, R, d]."""
    return np.stack([self.u, self.v], -1) @ self.basis


def _memories(memories) -> np.ndarray:
  memories = np.asarray(memories, np.float32)
  if memories.ndim != 2 or memories.shape[0] < 1 or memories.shape[1] < 2:
    raise ValueError(f"memories must have shape [num_memories, dim] with dim >= 2, got {memories.shape}")
  return memories


def plane_basis(memories, *, method: str = "pca", pair: tuple[int, int] = (0, 1)) -> np.ndarray:
  """Orthonormal basis [2, d] of the viewing plane (the identity for d = 2)."""
  memories = _memories(memories)
  num, dim = memories.shape
  if dim == 2:
    return np.eye(2, dtype=np.float32)
  if method == "memories":
    i, j = pair
    if not (0 <= i < num and 0 <= j < num) or i == j:
      raise ValueError(f"pair must name two different memories in [0, {num}), got {pair}")
    b0 = memories[i] / np.linalg.norm(memories[i])
    w = memories[j] - (memories[j] @ b0) * b0
    if np.linalg.norm(w) < 1e-6 * np.linalg.norm(memories[j]):
      raise ValueError(f"memories {i} and {j} are parallel; they do not span a plane")
    return np.stack([b0, w / np.linalg.norm(w)]).astype(np.float32)
  if method == "pca":
    if num < 2:
      raise ValueError("method='pca' needs at least 2 memories")
    _, _, vt = np.linalg.svd(memories, full_matrices=False)
    return vt[:2].astype(np.float32)
  raise ValueError(f"unknown plane method {method!r}; use 'pca' or 'memories'")


def project(points, basis) -> np.ndarray:
  """Plane coordinates [..., 2] of points [..., d] (orthogonal projection)."""
  points, basis = np.asarray(points), np.asarray(basis)
  if points.shape[-1] != basis.shape[-1]:
    raise ValueError(f"points have dim {points.shape[-1]} but the plane lives in dim {basis.shape[-1]}")
  return points @ basis.T


def energy_grid(memories, *, beta: float, normalizer: str = "softmax1", basis=None,
                extent: float | None = None, resolution: int = 101) -> EnergyGrid:
  """Energy on a resolution x resolution grid over [-extent, extent]^2 of the plane.

  One batched `hopfield_energy` call over all [R, R, d] points (the op is vectorised over the
  query's leading axes). `extent` defaults to 1.4 x the largest memory norm, so every memory and
  the basin walls around it are in view.
  """
  memories = _memories(memories)
  (normalizer,) = check_normalizers([normalizer])
  basis = plane_basis(memories) if basis is None else np.asarray(basis, np.float32)
  if basis.shape != (2, memories.shape[1]):
    raise ValueError(f"basis must have shape (2, {memories.shape[1]}), got {basis.shape}")
  if not (isinstance(resolution, int) and resolution >= 2):
    raise ValueError(f"resolution must be an int >= 2, got {resolution!r}")
  if extent is None:
    extent = 1.4 * float(np.linalg.norm(memories, axis=1).max())
  axis = np.linspace(-extent, extent, resolution, dtype=np.float32)
  u, v = np.meshgrid(axis, axis)
  grid = EnergyGrid(u, v, np.empty_like(u), basis)
  values = energy(jnp.asarray(grid.points()), jnp.asarray(memories), beta=beta, normalizer=normalizer)
  return dataclasses.replace(grid, energy=np.asarray(values))
