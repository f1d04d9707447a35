"""The train and eval steps as pure functions of (state, batch), ready for `jax.jit`.

The model is split once into a graph definition, its parameters (trained, checkpointed) and the
rest (RNG streams and any buffers: rebuilt from the seed, never trained). Each step merges them
back. Randomness (dropout, MLM masking) comes from fold_in(base key, step): a resumed run draws the
same numbers as an uninterrupted one without checkpointing RNG stream counters.

TrainState is a dict: params (nnx.State), opt_state (optax), step (int32), rng (uint32 key data).
Mixed precision is the model's business (its config's `dtype`; parameters stay float32).
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

TrainState = dict[str, Any]


def reseed(rest, key: jax.Array):
  """`rest` with every RNG stream (dropout, ...) restarted from fold_in(key, i), counters at 0."""
  counter = iter(range(1 << 30))

  def one(v):
    if isinstance(v, nnx.RngKey):
      new = jax.random.fold_in(key, next(counter))
      return v.replace(jax.random.wrap_key_data(jax.random.key_data(new),
                                                impl=jax.random.key_impl(v.get_value())))
    if isinstance(v, nnx.RngCount):
      return v.replace(jnp.zeros_like(v.get_value()))
    return v

  return jax.tree.map(one, rest, is_leaf=lambda x: isinstance(x, nnx.Variable))


def make_train_step(task, graphdef, tx: optax.GradientTransformation, schedule):
  """Returns train_step(state, rest, batch) -> (state, metrics); metrics are device scalars."""

  def train_step(state: TrainState, rest, batch):
    step = state["step"]
    key = jax.random.fold_in(jax.random.wrap_key_data(state["rng"]), step)
    task_key, dropout_key = jax.random.split(key)

    step_rest = reseed(rest, dropout_key)

    def loss_fn(params):
      # copy=True: fresh Variables at this trace level, so dropout may advance its RNG counter.
      model = nnx.merge(graphdef, params, step_rest, copy=True)
      stats = task.stats(model, batch, task_key, deterministic=False)
      return stats["loss_sum"] / jnp.maximum(stats["weight"], 1.0), stats

    (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
    updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    grad_norm = optax.tree.norm(grads)
    metrics = {"loss": loss, "grad_norm": grad_norm, "learning_rate": schedule(step),
               # the task's metric (accuracy; forecasting: MAE), named by its family in the logs
               "metric": stats["metric_sum"] / jnp.maximum(stats["weight"], 1.0),
               "weight": stats["weight"],
               "finite": jnp.isfinite(loss) & jnp.isfinite(grad_norm)}
    new_state = {"params": params, "opt_state": opt_state, "step": step + 1, "rng": state["rng"]}
    return new_state, metrics

  return train_step


def make_eval_step(task, graphdef):
  """Returns eval_step(params, rest, batch, key) -> summed stats (loss_sum, weight, metric_sum)."""

  def eval_step(params, rest, batch, key):
    model = nnx.merge(graphdef, params, rest, copy=True)
    return task.stats(model, batch, key, deterministic=True)

  return eval_step
