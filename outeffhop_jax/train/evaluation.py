"""Evaluation, usable outside training: the loop calls it, and so can the analysis package.

    run = load_from_workdir("/tmp/opt_softmax1")          # model with restored parameters
    metrics = evaluate(run.model, run.config)             # {"loss", "perplexity", "accuracy", ...}
    for batch in eval_batches(run.config, num_batches=4):  # host numpy batches
      inputs = run.task.inputs(batch, eval_key(0))        # what the model reads (MLM: masked)

`evaluate` runs the same deterministic batches (and MLM masks) as the training run's own eval.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Iterable

import jax
import ml_collections
from flax import nnx

from outeffhop_jax import data
from outeffhop_jax.train import checkpoint as checkpoint_lib
from outeffhop_jax.train import families
from outeffhop_jax.train import input as input_lib
from outeffhop_jax.train import setup as setup_lib

EVAL_SEED = 12345  # MLM masks of evaluation batch i come from fold_in(key(EVAL_SEED), i)


def eval_key(index: int) -> jax.Array:
  return jax.random.fold_in(jax.random.key(EVAL_SEED), index)


def eval_batches(config, num_batches: int | None = None, tokenizer=None) -> Iterable[dict]:
  """This host's evaluation batches (numpy), exactly `num_batches` (default: the config's)."""
  tokenizer = tokenizer or input_lib.tokenizer_for(config)
  n = input_lib.num_eval_batches(config) if num_batches is None else num_batches
  return data.fixed_count(input_lib.eval_dataset(config, tokenizer), n)


def summarize(totals: dict[str, float], task_name: str) -> dict[str, float]:
  weight = max(totals["weight"], 1.0)
  out = {"loss": totals["loss_sum"] / weight, "accuracy": totals["correct"] / weight,
         "count": totals["weight"]}
  out.update(families.for_task(task_name).summary(out))  # perplexity; forecasting: mse, mae
  return out


def run_eval(eval_step, params, rest, batches, to_global, task_name: str) -> dict[str, float]:
  """Sums the jitted eval step over batches (keys by batch index); returns summarize()."""
  pending = [eval_step(params, rest, to_global(batch), eval_key(i))
             for i, batch in enumerate(batches)]
  totals = {"loss_sum": 0.0, "weight": 0.0, "correct": 0.0}
  for stats in jax.device_get(pending):
    for k in totals:
      totals[k] += float(stats[k])
  return summarize(totals, task_name)


def evaluate(model: nnx.Module, config, *, num_batches: int | None = None,
             batches: Iterable[dict] | None = None, mesh=None) -> dict[str, float]:
  """Loss / accuracy (/ perplexity) of `model` on the config's evaluation split.

  `batches`: host numpy batches (default: `eval_batches(config, num_batches)`). The model's
  parameters are sharded over `mesh` (default: the config's mesh) as in training.
  """
  setup = setup_lib.build(config, mesh)
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  params = jax.device_put(params, setup.state_shardings["params"])
  rest = jax.device_put(rest, setup.rest_shardings)
  batch_size = input_lib.eval_batch_size(config)
  step = setup_lib.jit_eval_step(dataclasses.replace(setup, graphdef=graphdef), batch_size)
  if batches is None:
    batches = eval_batches(config, num_batches, setup.tokenizer)
  return run_eval(step, params, rest, batches, lambda b: setup_lib.global_batch(setup, b),
                  setup.task.name)


@dataclasses.dataclass
class LoadedRun:
  """A trained model rebuilt from its workdir."""
  model: nnx.Module
  config: ml_collections.ConfigDict
  model_cfg: Any
  task: Any
  tokenizer: Any
  step: int


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The run's config from workdir/config.json; its recorded "model_config" (every field of the
  model that was built) becomes config.model, so the rebuilt model is the trained one."""
  with open(os.path.join(workdir, "config.json")) as f:
    stored = json.load(f)
  model_cfg = stored.pop("model_config", None)
  if model_cfg is not None:
    stored["model"] = model_cfg
  return ml_collections.ConfigDict(stored)


def load_from_workdir(workdir: str, step: int | None = None, *, mesh=None,
                      **model_overrides) -> LoadedRun:
  """Rebuilds the model of a training run and restores its parameters (latest step by default).

  model_overrides replace fields of the model config (e.g. capture_intermediates=True,
  attention_impl="reference") without changing the parameters.
  """
  config = load_config(workdir)
  if model_overrides:
    config.model.update(model_overrides)
  if mesh is None:
    mesh = setup_lib.sharding.make_mesh((-1, 1, 1))  # evaluation: data parallel on any host
  setup = setup_lib.build(config, mesh)
  ckpt = checkpoint_lib.Checkpointer(os.path.join(workdir, "checkpoints"), save_every=1, keep=0,
                                     async_save=False)
  try:
    # step None: the newest checkpoint that restores (a damaged newer one is skipped, warned).
    state, step = ckpt.restore_step(setup.abstract_state, step=step)
  finally:
    ckpt.close()
  rest = setup_lib.fresh_rest(setup)
  model = nnx.merge(setup.graphdef, state["params"], rest)
  return LoadedRun(model, config, setup.model_cfg, setup.task, setup.tokenizer, int(step))
