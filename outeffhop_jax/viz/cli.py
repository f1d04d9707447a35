"""`python -m outeffhop_jax.viz EXPERIMENT --out DIR`: writes each experiment's figures as PNGs.

Experiments: landscape, gallery, capacity, noop, energy-descent, all. Defaults are small (seconds on
a CPU); flags scale them up. Flags an experiment does not use are ignored; a flag left unset takes
that experiment's own default.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

import jax
import numpy as np

from outeffhop_jax.viz import capacity, descent, digits, gallery, landscape, noop
from outeffhop_jax.viz._common import DEFAULT_NORMALIZERS, check_betas, check_normalizers


def _save(fig, out: pathlib.Path, name: str, dpi: int) -> pathlib.Path:
  path = out / f"{name}.png"
  fig.savefig(path, dpi=dpi)
  return path


def _or(value, default):
  return default if value is None else value


def run_landscape(a, out):
  rng = np.random.default_rng(a.seed)
  num = _or(a.memories, 5)
  # Spread memories around a circle (jittered) so the basins are distinct at moderate beta.
  angles = 2 * np.pi * (np.arange(num) + rng.uniform(-0.25, 0.25, num)) / num
  mem2 = np.stack([np.cos(angles), np.sin(angles)], -1) * rng.uniform(0.7, 1.2, (len(angles), 1))
  queries = rng.uniform(-1.2, 1.2, (_or(a.queries, 6), 2))
  kw = dict(normalizers=a.normalizers, betas=_or(a.betas, (1.0, 4.0, 16.0)), steps=_or(a.steps, 6),
            resolution=a.resolution)
  paths = [_save(landscape.landscape_figure(mem2, queries, **kw), out, "landscape_contour", a.dpi),
           _save(landscape.landscape_figure(mem2, kind="surface", **kw), out, "landscape_surface",
                 a.dpi)]
  # d = 64: the plane through two digit memories (and the origin, OutEffHop's no-op memory).
  mem64, _ = digits.digit_patterns(_or(a.memories, 10), seed=a.seed)
  q64 = np.asarray(digits.corrupt(mem64[:3], None, kind="mask", amount=0.5))
  fig = landscape.landscape_figure(mem64, q64, plane="memories", pair=(0, 1), **kw)
  paths.append(_save(fig, out, "landscape_digits_plane", a.dpi))
  return paths


def run_gallery(a, out):
  mem, _ = digits.digit_patterns(_or(a.memories, 10), seed=a.seed)
  queries, targets, labels = gallery.gallery_queries(mem, num_targets=min(3, len(mem)), seed=a.seed)
  fig = gallery.gallery_figure(mem, queries, targets, labels, normalizers=a.normalizers,
                               betas=_or(a.betas, (4.0, 64.0)), steps=_or(a.steps, 1))
  return [_save(fig, out, "gallery", a.dpi)]


def run_capacity(a, out):
  result = capacity.capacity_curves(
      dim=a.dim, num_memories=_or(a.num_memories, (4, 16, 64, 256)),
      betas=_or(a.betas, (2.0, 8.0, 32.0)), normalizers=a.normalizers,
      num_queries=_or(a.queries, 64), steps=_or(a.steps, 3), seed=a.seed)
  return [_save(capacity.capacity_figure(result), out, "capacity", a.dpi)]


def run_noop(a, out):
  mem, _ = digits.digit_patterns(_or(a.memories, 10), seed=a.seed)
  result = noop.noop_fraction(mem, betas=_or(a.betas, (4.0, 16.0, 64.0)), normalizers=a.normalizers,
                              num_queries=_or(a.queries, 1000), steps=_or(a.steps, 1), seed=a.seed)
  return [_save(noop.noop_figure(result), out, "noop", a.dpi)]


def run_energy_descent(a, out):
  mem, _ = digits.digit_patterns(_or(a.memories, 10), seed=a.seed)
  n = _or(a.queries, 8)
  targets = mem[np.arange(n) % len(mem)]
  queries = digits.corrupt(targets, jax.random.PRNGKey(a.seed), kind="noise", amount=1.0)
  (beta,) = _or(a.betas, (4.0,))[:1]
  energies = descent.energy_descent(mem, queries, beta=beta, normalizers=a.normalizers,
                                    steps=_or(a.steps, 10))
  return [_save(descent.descent_figure(energies, normalizers=a.normalizers, beta=beta), out,
                "energy_descent", a.dpi)]


EXPERIMENTS = {"landscape": run_landscape, "gallery": run_gallery, "capacity": run_capacity,
               "noop": run_noop, "energy-descent": run_energy_descent}


def _floats(text):
  try:
    return tuple(float(t) for t in text.split(","))
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _ints(text):
  try:
    return tuple(int(t) for t in text.split(","))
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog="python -m outeffhop_jax.viz", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("experiment", choices=[*EXPERIMENTS, "all"])
  p.add_argument("--out", default="viz_out", help="output folder (created)")
  p.add_argument("--normalizers", default=",".join(DEFAULT_NORMALIZERS),
                 help="comma-separated normalizer specs (softmax, softmax1, softmax_n:N, sparsemax, "
                      "entmax:ALPHA)")
  p.add_argument("--betas", type=_floats, help="comma-separated inverse temperatures")
  p.add_argument("--steps", type=int, help="retrieval updates")
  p.add_argument("--memories", type=int, help="number of memories (landscape, gallery, noop, descent)")
  p.add_argument("--queries", type=int, help="number of queries")
  p.add_argument("--num-memories", type=_ints, help="capacity: comma-separated M values")
  p.add_argument("--dim", type=int, default=16, help="capacity: pattern dimension")
  p.add_argument("--resolution", type=int, default=81, help="landscape: grid points per axis")
  p.add_argument("--dpi", type=int, default=110)
  p.add_argument("--seed", type=int, default=0)
  return p


def main(argv=None) -> list[pathlib.Path]:
  """Parses `argv` (default sys.argv[1:]), runs the experiment(s), returns the PNG paths."""
  parser = build_parser()
  a = parser.parse_args(argv)
  try:  # validate up front so a typo fails before minutes of work, with the valid forms listed
    a.normalizers = check_normalizers([s for s in a.normalizers.split(",") if s])
    if a.betas is not None:
      check_betas(a.betas)
  except ValueError as e:
    parser.error(str(e))
  for name in ("steps", "memories", "queries", "dim", "resolution", "dpi"):
    value = getattr(a, name)
    if value is not None and value < (2 if name in ("dim", "resolution") else 1):
      parser.error(f"--{name} must be >= {2 if name in ('dim', 'resolution') else 1}, got {value}")
  if a.memories is not None and a.memories > 64 and a.experiment in ("gallery", "noop", "all"):
    parser.error("--memories must be <= 64 for gallery/noop: digit patterns have d = 64, and a query "
                 "unlike every memory exists only for linearly independent memories")
  out = pathlib.Path(a.out)
  out.mkdir(parents=True, exist_ok=True)
  names = list(EXPERIMENTS) if a.experiment == "all" else [a.experiment]
  paths = []
  for name in names:
    start = time.perf_counter()
    written = EXPERIMENTS[name](a, out)
    print(f"{name}: {', '.join(os.fspath(p) for p in written)} ({time.perf_counter() - start:.1f} s)")
    paths += written
  return paths


if __name__ == "__main__":
  main(sys.argv[1:])
