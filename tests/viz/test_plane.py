"""The energy grid and the plane it lives on."""
import jax.numpy as jnp
import numpy as np
import pytest

from outeffhop_jax import ops
from outeffhop_jax.viz import energy_grid, plane_basis, project

NORMALIZERS = ["softmax", "softmax1", "sparsemax", "entmax:1.5"]


def memories(M=5, d=8, seed=0):
  rng = np.random.default_rng(seed)
  return rng.normal(size=(M, d)).astype(np.float32) / np.sqrt(d)


@pytest.mark.parametrize("normalizer", NORMALIZERS)
@pytest.mark.parametrize("d, method", [(2, "pca"), (8, "pca"), (8, "memories")])
def test_grid_equals_pointwise_energy(normalizer, d, method):
  xi = memories(d=d)
  basis = plane_basis(xi, method=method, pair=(1, 3))
  grid = energy_grid(xi, beta=3.0, normalizer=normalizer, basis=basis, resolution=9)
  assert grid.energy.shape == grid.u.shape == (9, 9)
  for i, j in [(0, 0), (4, 4), (2, 7), (8, 1)]:
    x = grid.u[i, j] * basis[0] + grid.v[i, j] * basis[1]  # independent of EnergyGrid.points()
    e = ops.hopfield_energy(jnp.asarray(x), jnp.asarray(xi), beta=3.0, normalizer=normalizer)
    np.testing.assert_allclose(grid.energy[i, j], e, rtol=1e-5, atol=1e-6)


def test_plane_bases():
  np.testing.assert_array_equal(plane_basis(memories(d=2)), np.eye(2))
  xi = memories(d=8)
  for method in ("pca", "memories"):
    b = plane_basis(xi, method=method, pair=(1, 3))
    np.testing.assert_allclose(b @ b.T, np.eye(2), atol=1e-5)
  # The plane through two memories contains both exactly (projection loses nothing).
  b = plane_basis(xi, method="memories", pair=(1, 3))
  np.testing.assert_allclose(project(xi[[1, 3]], b) @ b, xi[[1, 3]], atol=1e-5)


def test_bad_arguments():
  xi = memories(d=8)
  with pytest.raises(ValueError, match="unknown plane method"):
    plane_basis(xi, method="tsne")
  with pytest.raises(ValueError, match="parallel"):
    plane_basis(np.stack([xi[0], 2 * xi[0]]), method="memories")
  with pytest.raises(ValueError, match="two different memories"):
    plane_basis(xi, method="memories", pair=(0, 0))
  with pytest.raises(ValueError, match="unknown normalizer spec"):
    energy_grid(xi, beta=1.0, normalizer="softmax2")
  with pytest.raises(ValueError, match="no Hopfield energy"):
    energy_grid(xi, beta=1.0, normalizer="clipped:-0.1:1.0")
  with pytest.raises(ValueError, match="basis must have shape"):
    energy_grid(xi, beta=1.0, basis=np.eye(2))
  with pytest.raises(ValueError, match="dim"):
    project(np.zeros((3, 4)), plane_basis(xi))
