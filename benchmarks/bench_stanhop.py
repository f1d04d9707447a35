"""Training-step time of the tiny STanHop-Net with softmax, softmax1 and learnable-alpha entmax (GSH).

The three models (configs/stanhop_tiny.py's model: in 24 -> out 12, segments of 6, d=32, 2 heads,
2 encoder scales; 4 series, batch 32, Adam) are timed interleaved in one process; prints each
median step time and the ratios to softmax (the entmax overhead: bisection forward, closed-form
backward including d/d alpha, in every GSH layer).

    python benchmarks/bench_stanhop.py [--reps 7] [--steps 10] [--series 4] [--batch 32]
"""
from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402

from _timing import interleaved, machine  # noqa: E402
from outeffhop_jax.models import STanHopConfig, STanHopNet  # noqa: E402

VARIANTS = {
    "softmax": dict(normalizer="softmax", learn_alpha=False),
    "softmax1": dict(normalizer="softmax1", learn_alpha=False),
    "entmax (learned alpha)": dict(normalizer="entmax:1.5", learn_alpha=True),
}
TINY = dict(in_len=24, out_len=12, seg_len=6, d_model=32, num_heads=2, num_layers=2, d_ff=64,
            num_routers=4)


def trainer(n_series: int, steps: int, **variant):
  cfg = STanHopConfig.from_preset("tiny", n_series=n_series, **TINY, **variant)
  model = STanHopNet(cfg, rngs=nnx.Rngs(0))
  tx = optax.adam(1e-3)
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  opt_state = tx.init(params)

  def one(carry, xy):
    params, opt_state = carry
    x, y = xy
    loss_fn = lambda p: jnp.mean((nnx.merge(graphdef, p, rest)(x) - y) ** 2)  # no dropout
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), loss

  @jax.jit
  def run(params, opt_state, x, y):  # `steps` train steps in one dispatch
    return jax.lax.scan(one, (params, opt_state), (x, y))

  return run, (params, opt_state), cfg


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--reps", type=int, default=7)
  ap.add_argument("--steps", type=int, default=10)
  ap.add_argument("--series", type=int, default=4)
  ap.add_argument("--batch", type=int, default=32)
  a = ap.parse_args()
  fns, args = {}, {}
  for name, variant in VARIANTS.items():
    run, (params, opt_state), cfg = trainer(a.series, a.steps, **variant)
    k1, k2 = jax.random.split(jax.random.key(0))
    x = jax.random.normal(k1, (a.steps, a.batch, cfg.in_len, a.series))
    y = jax.random.normal(k2, (a.steps, a.batch, cfg.out_len, a.series))
    fns[name], args[name] = run, (params, opt_state, x, y)
  times = interleaved(fns, args, repeats=a.reps)
  print(f"STanHop-Net tiny train step, batch {a.batch}, {a.series} series ({machine()})")
  base = times["softmax"] / a.steps
  for name, t in times.items():
    print(f"  {name:24s} {1e3 * t / a.steps:8.2f} ms/step   x{t / a.steps / base:.2f} vs softmax")
  print(f"entmax overhead: x{times['entmax (learned alpha)'] / times['softmax']:.2f} "
        f"(softmax1: x{times['softmax1'] / times['softmax']:.2f})")


if __name__ == "__main__":
  main()
