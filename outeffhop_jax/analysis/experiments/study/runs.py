"""A trained run as the analysis sees it: model on one device, evaluation and calibration batches.

    run = load_run(workdir)                      # train.load_from_workdir on a 1-device mesh
    ev = evaluate_model(run.model, run.task, eval_set(run, 8))    # {"loss", "perplexity", ...}
    cal = calibration_inputs(run, subset=1, num_batches=4)        # model inputs from the train split

Evaluation is the training system's (`train.evaluation.run_eval` over `train.step.make_eval_step`,
with its batches and MLM masks), so the float numbers equal the run's own eval; the same path
evaluates quantized copies.
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from outeffhop_jax import train
from outeffhop_jax.train import evaluation
from outeffhop_jax.train import input as input_lib
from outeffhop_jax.train import sharding
from outeffhop_jax.train import step as step_lib

CALIBRATION_SEED = 777


@dataclasses.dataclass
class EvalBatch:
  batch: dict          # host numpy batch as the task reads it
  inputs: Any          # what the model's __call__ reads (MLM: masked tokens)
  key: jax.Array       # the eval key of this batch (MLM masks)
  weights: np.ndarray  # [B] example mask (0 = padding row)


def load_run(workdir: str, step: int | None = None) -> train.LoadedRun:
  """The trained model of `workdir` on the first local device, attention on the reference path
  (so that attention maps can be captured)."""
  mesh = sharding.make_mesh((1, 1, 1), jax.local_devices()[:1])
  return train.load_from_workdir(workdir, step, mesh=mesh, attention_impl="reference")


def eval_set(run: train.LoadedRun, num_batches: int | None = None) -> list[EvalBatch]:
  out = []
  for i, batch in enumerate(train.eval_batches(run.config, num_batches, run.tokenizer)):
    key = train.eval_key(i)
    out.append(EvalBatch(batch, np.asarray(run.task.inputs(batch, key)), key,
                         np.asarray(batch["example_mask"], np.float32)))
  return out


def calibration_inputs(run: train.LoadedRun, subset: int, num_batches: int) -> list[np.ndarray]:
  """Model inputs of calibration subset `subset`: training batches
  [subset * num_batches, (subset + 1) * num_batches) of the run's (shuffled) train stream."""
  ds = input_lib.train_dataset(run.config, run.tokenizer)
  it = iter(ds)
  try:
    batches = list(itertools.islice(it, subset * num_batches, (subset + 1) * num_batches))
  finally:
    if hasattr(it, "close"):
      it.close()
  base = jax.random.key(CALIBRATION_SEED)
  return [np.asarray(run.task.inputs(b, jax.random.fold_in(base, subset * num_batches + i)))
          for i, b in enumerate(batches)]


@functools.lru_cache(maxsize=16)
def _eval_step(task, graphdef):
  """The training system's jitted eval step for one model structure (quantized copies share one)."""
  return jax.jit(step_lib.make_eval_step(task, graphdef))


def _to_device(batch: dict) -> dict:
  return {k: jnp.asarray(v) for k, v in batch.items()}


def evaluate_model(model: nnx.Module, task, batches: list[EvalBatch]) -> dict[str, float]:
  """Loss, accuracy (and perplexity for LMs) of `model` summed over `batches`, by the training
  system's evaluation (`train.evaluation.run_eval`: batch i uses `eval_key(i)`, perplexity capped
  as in training), on one device."""
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  return evaluation.run_eval(_eval_step(task, graphdef), params, rest, [b.batch for b in batches],
                             _to_device, task.name)


def headline_metric(task_name: str) -> tuple[str, str, bool]:
  """(result key, column title, higher is better): perplexity for LMs, top-1 % for classifiers,
  test MSE for forecasting."""
  if task_name == "classification":
    return "top1", "top-1 %", True
  if task_name == "forecasting":
    return "mse", "MSE", False
  return "perplexity", "ppl", False


def headline_value(ev: dict, task_name: str) -> float:
  if task_name == "classification":
    return 100.0 * ev["accuracy"]
  return ev["loss"] if task_name == "forecasting" else ev["perplexity"]
