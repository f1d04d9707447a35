"""Compile + first-call time of jax.random.normal on this backend: JAX's partitionable threefry
(its default) against the classic one, side by side in one process.

    JAX_PLATFORMS=cpu python benchmarks/bench_threefry_compile.py

Each shape is drawn once per mode (the mode is part of the jit cache key, so each first call
compiles); modes alternate per shape so that machine load hits both alike. Prints per-shape
seconds and the ratio partitionable / classic. tests/conftest.py switches the suite to the classic
threefry on the strength of this ratio.
"""
import time

import jax

SHAPES = [(2, 9, 4, 8), (2, 11, 2, 8), (3, 5, 7), (64, 32), (4, 16, 16, 3), (128,)]


def first_call_s(shape, partitionable: bool) -> float:
  jax.config.update("jax_threefry_partitionable", partitionable)
  t = time.perf_counter()
  jax.random.normal(jax.random.key(0), shape).block_until_ready()
  return time.perf_counter() - t


def main():
  jax.random.normal(jax.random.key(0), (1,)).block_until_ready()  # backend start-up, not a draw
  default = jax.config.jax_threefry_partitionable
  print(f"backend {jax.default_backend()}, jax {jax.__version__}, default partitionable={default}")
  ratios = []
  for i, shape in enumerate(SHAPES):
    order = (True, False) if i % 2 == 0 else (False, True)
    s = {mode: first_call_s(shape, mode) for mode in order}
    ratios.append(s[True] / s[False])
    print(f"{str(shape):16s} partitionable {s[True]:.2f} s  classic {s[False]:.2f} s  "
          f"ratio {ratios[-1]:.1f}")
  jax.config.update("jax_threefry_partitionable", default)
  ratios.sort()
  print(f"ratio partitionable / classic: median {ratios[len(ratios) // 2]:.1f}, "
        f"range {ratios[0]:.1f}-{ratios[-1]:.1f}")


if __name__ == "__main__":
  main()
