"""Landscape figures draw exactly the ops' energies; trajectories descend the energy."""
import jax.numpy as jnp
import numpy as np
import pytest
from matplotlib.collections import QuadMesh

from outeffhop_jax import ops
from outeffhop_jax.viz import energy_descent, landscape_figure, plane_basis, trajectories

NORMALIZERS = ("softmax", "softmax1", "sparsemax", "entmax:1.5")


def setup(d, M=4, n=3, seed=0):
  rng = np.random.default_rng(seed)
  return (rng.normal(size=(M, d)).astype(np.float32),
          rng.normal(size=(n, d)).astype(np.float32))


@pytest.mark.parametrize("d", [2, 6])
def test_drawn_values_equal_pointwise_energy(d):
  xi, q = setup(d)
  betas = (1.0, 4.0)
  fig = landscape_figure(xi, q, normalizers=NORMALIZERS, betas=betas, resolution=7, steps=2)
  basis = plane_basis(xi)
  panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
  assert len(panels) == len(betas) * len(NORMALIZERS)
  for k, ax in enumerate(panels):
    beta, spec = betas[k // len(NORMALIZERS)], NORMALIZERS[k % len(NORMALIZERS)]
    assert f"beta={beta:g}" in ax.get_title()
    (mesh,) = [c for c in ax.collections if isinstance(c, QuadMesh)]
    uv = np.asarray(mesh.get_coordinates())  # [R, R, 2] vertices (Gouraud shading)
    drawn = np.asarray(mesh.get_array()).reshape(uv.shape[:2])
    for i, j in [(0, 0), (3, 5), (6, 6)]:
      x = uv[i, j, 0] * basis[0] + uv[i, j, 1] * basis[1]
      e = ops.hopfield_energy(jnp.asarray(x), jnp.asarray(xi), beta=beta, normalizer=spec)
      np.testing.assert_allclose(drawn[i, j], e, rtol=1e-5, atol=1e-6)
    assert ax.get_xlabel() and ax.get_title()
  assert sum(ax.get_label() == "<colorbar>" for ax in fig.axes) == len(panels)


def test_surface_figure_builds():
  xi, _ = setup(2)
  fig = landscape_figure(xi, normalizers=("softmax1",), betas=(2.0,), kind="surface", resolution=6)
  assert fig.axes[0].name == "3d" and fig.axes[0].get_zlabel() == "energy"


@pytest.mark.parametrize("spec", NORMALIZERS + ("softmax_n:3",))
def test_trajectories_are_energy_non_increasing(spec):
  xi, q = setup(5, M=6, n=8)
  traj = trajectories(q, xi, beta=2.0, normalizer=spec, steps=8)
  assert traj.shape == (9, 8, 5)
  np.testing.assert_array_equal(traj[0], q)
  e = np.asarray(ops.hopfield_energy(jnp.asarray(traj), jnp.asarray(xi), beta=2.0, normalizer=spec))
  assert (np.diff(e, axis=0) <= 1e-5 * (1 + np.abs(e[1:]))).all()
  np.testing.assert_allclose(energy_descent(xi, q, beta=2.0, normalizers=[spec], steps=8)[0], e,
                             rtol=1e-5, atol=1e-6)


def test_bad_arguments():
  xi, q = setup(4)
  with pytest.raises(ValueError, match=r"queries must have shape \[n, 4\]"):
    landscape_figure(xi, q[:, :3], betas=(1.0,))
  with pytest.raises(ValueError, match="unknown normalizer spec 'softmax0'"):
    landscape_figure(xi, normalizers=("softmax0",), betas=(1.0,))
  with pytest.raises(ValueError, match="unknown kind"):
    landscape_figure(xi, kind="wireframe", betas=(1.0,))
  with pytest.raises(ValueError, match="betas"):
    landscape_figure(xi, betas=(0.0,))
