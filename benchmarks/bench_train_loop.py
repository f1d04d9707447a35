r"""Training-loop overhead vs the bare jitted step, and tokens/s of the tiny presets on this machine.

For each tiny preset:
  bare  -- the jitted train step alone, on batches already on device, timed over N steps;
  loop  -- `outeffhop_jax.train.run` for W + N steps with eval and checkpoints out of the way; its
           logged throughput (which leaves out time spent in eval / checkpoint calls) over the
           last N steps includes the input pipeline, host->device transfer, metric fetching and
           logging.
overhead = bare rate / loop rate - 1 (target <= 5 %).

  JAX_PLATFORMS=cpu python benchmarks/bench_train_loop.py [--steps 40] [--presets opt_tiny,...]
"""
import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import jax  # noqa: E402

from outeffhop_jax.train import pipelines  # noqa: E402
from outeffhop_jax.train import load_metrics  # noqa: E402
from outeffhop_jax.train import config_lib, loop, setup as setup_lib  # noqa: E402


def load_preset(name: str, variant: str):
  return config_lib.config_from_file(os.path.join(REPO, "configs", f"{name}.py"), variant)


def bare_rate(config, steps: int) -> float:
  """Examples (or tokens) per second of the jitted step alone."""
  setup = setup_lib.build(config)
  state, rest = setup_lib.init_state(setup)
  train_step = setup_lib.jit_train_step(setup)
  it = iter(pipelines.train_dataset(config, setup.tokenizer))
  batches = [setup_lib.global_batch(setup, next(it)) for _ in range(steps + 2)]
  it.close()
  for b in batches[:2]:  # compile + warm up
    state, m = train_step(state, rest, b)
  jax.block_until_ready(m)
  t = time.perf_counter()
  for b in batches[2:]:
    state, m = train_step(state, rest, b)
  jax.block_until_ready((state, m))
  dt = time.perf_counter() - t
  return steps * _units_per_batch(config) / dt


def loop_rate(config, warmup: int, steps: int) -> float:
  with tempfile.TemporaryDirectory() as workdir:
    config = config.copy_and_resolve_references()
    # Log every `warmup` steps: intervals after the first exclude compilation.
    config.train.update(num_steps=warmup + steps, log_every=warmup,
                        eval_every=0, num_eval_batches=1, checkpoint_every=10**9,
                        progress_bar=False)
    loop.run(config, workdir)
    lines = load_metrics(workdir)
  key = "train/tokens_per_s" if pipelines.is_text(config) else "train/examples_per_s"
  rates = [l[key] for l in lines if key in l and l["step"] > warmup]
  return len(rates) / sum(1.0 / r for r in rates)  # equal step counts: harmonic mean


def _units_per_batch(config) -> int:
  per_example = int(config.data.seq_len) if pipelines.is_text(config) else 1
  return per_example * int(config.train.global_batch_size)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--steps", type=int, default=40, help="a multiple of --warmup")
  parser.add_argument("--warmup", type=int, default=10)
  parser.add_argument("--presets", default="opt_tiny,bert_tiny,vit_tiny")
  parser.add_argument("--variant", default="softmax1")
  args = parser.parse_args()
  print(f"{jax.device_count()} x {jax.devices()[0].device_kind}, {os.cpu_count()} CPU cores")
  print(f"{'preset':10s} {'unit':>9s} {'bare':>10s} {'loop':>10s} {'overhead':>9s}")
  for name in args.presets.split(","):
    config = load_preset(name, args.variant)
    unit = "tokens/s" if pipelines.is_text(config) else "images/s"
    bare = bare_rate(config, args.steps)
    looped = loop_rate(config, args.warmup, args.steps)
    print(f"{name:10s} {unit:>9s} {bare:10.0f} {looped:10.0f} {bare / looped - 1:9.1%}",
          flush=True)


if __name__ == "__main__":
  main()
