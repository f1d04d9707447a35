"""Energy-landscape inspection for modern Hopfield models (matplotlib; functions return Figures).

  plane       plane_basis, project, energy_grid -> EnergyGrid (the values the landscapes draw)
  landscape   landscape_figure (contour / surface, memories and trajectories, normalizers x betas)
  digits      digit_patterns, corrupt, unlike_all (scikit-learn digits as image memories)
  gallery     gallery_queries, gallery_figure (retrieved images per normalizer and beta)
  capacity    capacity_curves, capacity_figure (retrieval error vs number of memories)
  noop        noop_fraction, noop_figure (OutEffHop's no-op retrievals vs query similarity)
  descent     energy_descent, descent_figure (energy along the iterates)
CLI: `python -m outeffhop_jax.viz {landscape,gallery,capacity,noop,energy-descent,all} --out DIR`.
"""
from outeffhop_jax.viz._common import DEFAULT_NORMALIZERS
from outeffhop_jax.viz.capacity import CapacityResult, capacity_curves, capacity_figure
from outeffhop_jax.viz.descent import descent_figure, energy_descent
from outeffhop_jax.viz.digits import corrupt, digit_patterns, unlike_all
from outeffhop_jax.viz.gallery import gallery_figure, gallery_queries
from outeffhop_jax.viz.landscape import landscape_figure, trajectories
from outeffhop_jax.viz.noop import NoopResult, noop_figure, noop_fraction
from outeffhop_jax.viz.plane import EnergyGrid, energy_grid, plane_basis, project

__all__ = [
    "DEFAULT_NORMALIZERS", "CapacityResult", "EnergyGrid", "NoopResult", "capacity_curves",
    "capacity_figure", "corrupt", "descent_figure", "digit_patterns", "energy_descent", "energy_grid",
    "gallery_figure", "gallery_queries", "landscape_figure", "noop_figure", "noop_fraction",
    "plane_basis", "project", "trajectories", "unlike_all",
]
