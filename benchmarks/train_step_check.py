"""One timed train step of a config at its preset batch (random tokens, no dataset needed).

    python benchmarks/train_step_check.py [--config configs/opt_125m.py:softmax1] [--steps 3]
           [--smoke] [--json out.json]

Builds the config's model, optimizer and sharded state exactly as train.py does (train.setup) and
runs --steps train steps on random token batches of the config's global batch and sequence length;
prints compile time, median step time and tokens/s. --smoke shrinks the model (1 layer) and the
batch (2 x 64 tokens) to check the path on CPU in seconds.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from outeffhop_jax.train import config_lib, setup as setup_lib  # noqa: E402


def load_config(spec: str):
  path, _, variant = spec.partition(":")
  return config_lib.config_from_file(path, variant or None)


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--config", default="configs/opt_125m.py:softmax1")
  ap.add_argument("--steps", type=int, default=3)
  ap.add_argument("--smoke", action="store_true")
  ap.add_argument("--json", default=None)
  a = ap.parse_args()
  config = load_config(a.config)
  with config.unlocked():
    config.data.dataset = "embedded"  # offline: the step needs shapes, not text
    if a.smoke:
      config.model.num_layers = 1
      config.train.global_batch_size = 2
      config.data.seq_len = 64
  setup = setup_lib.build(config)
  state, rest = setup_lib.init_state(setup)
  batch_size = int(config.train.global_batch_size)
  step = setup_lib.jit_train_step(setup, batch_size)
  rng = np.random.default_rng(0)
  vocab = int(setup.model_cfg.vocab_size)
  batch = {}
  for k, v in setup_lib.abstract_batch(setup, batch_size).items():
    if np.issubdtype(v.dtype, np.integer):
      batch[k] = rng.integers(0, vocab, v.shape).astype(v.dtype)
    else:
      batch[k] = np.ones(v.shape, v.dtype)
  batch = setup_lib.global_batch(setup, batch)
  t0 = time.perf_counter()
  state, m = step(state, rest, batch)
  jax.block_until_ready(m)
  compile_s = time.perf_counter() - t0
  times = []
  for _ in range(a.steps):
    t0 = time.perf_counter()
    state, m = step(state, rest, batch)
    jax.block_until_ready(m)
    times.append(time.perf_counter() - t0)
  tokens = batch_size * int(config.data.seq_len)
  res = {"config": a.config, "smoke": a.smoke, "device": jax.devices()[0].device_kind,
         "global_batch": batch_size, "tokens_per_step": tokens, "first_step_s": compile_s,
         "step_s": statistics.median(times), "tokens_per_s": tokens / statistics.median(times),
         "loss": float(m["loss"])}
  print(json.dumps(res))
  if a.json:
    with open(a.json, "w") as f:
      json.dump(res, f, indent=1)


if __name__ == "__main__":
  main()
