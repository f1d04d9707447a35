"""Everything a run needs before its first step, built abstractly (nothing allocated yet).

`build(config, mesh)` resolves the model config, splits an abstract model into graph definition,
parameters and the rest, and derives every sharding from the logical-axis rules. The jitted train
and eval steps, the sharded initialisation and the ahead-of-time TPU compile all start from it.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh

from outeffhop_jax.train import pipelines
from outeffhop_jax.train import optimizer as optimizer_lib
from outeffhop_jax.train import families, sharding, step as step_lib


@dataclasses.dataclass
class Setup:
  config: Any
  mesh: Mesh
  tokenizer: Any
  model_cfg: Any
  task: Any
  graphdef: Any
  abstract_params: nnx.State
  abstract_rest: nnx.State
  tx: optax.GradientTransformation
  schedule: optax.Schedule
  abstract_state: dict  # ShapeDtypeStructs carrying their shardings
  state_shardings: dict
  rest_shardings: Any
  unsplit: list


def mesh_from_config(config, devices=None) -> Mesh:
  return sharding.make_mesh((config.mesh.data, config.mesh.fsdp, config.mesh.tensor), devices)


def _model_fn(config, model_cfg):
  return lambda: families.build_model(config.family, model_cfg, int(config.train.seed))


def build(config, mesh: Mesh | None = None) -> Setup:
  mesh = mesh_from_config(config) if mesh is None else mesh
  tokenizer = pipelines.tokenizer_for(config)
  model_cfg = pipelines.resolved_model_config(config, tokenizer)
  task = families.make_task(config, tokenizer)
  graphdef, abs_params, abs_rest = nnx.split(nnx.eval_shape(_model_fn(config, model_cfg)),
                                             nnx.Param, ...)
  tx, schedule = optimizer_lib.make_optimizer(config.optimizer, int(config.train.num_steps))

  def init_state(params):
    return {"params": params, "opt_state": tx.init(params), "step": jnp.zeros((), jnp.int32),
            "rng": jax.random.key_data(jax.random.key(int(config.train.seed)))}

  abs_state = jax.eval_shape(init_state, abs_params)
  unsplit: list = []
  state_sh = sharding.state_shardings(abs_state, mesh, unsplit=unsplit)
  rest_sh = jax.tree.map(lambda _: sharding.replicated(mesh), abs_rest)
  abs_state = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                           abs_state, state_sh)
  return Setup(config, mesh, tokenizer, model_cfg, task, graphdef, abs_params, abs_rest, tx,
               schedule, abs_state, state_sh, rest_sh, unsplit)


def init_state(setup: Setup):
  """(state, rest): parameters initialised directly into their shards, optimizer state zeros."""
  config, tx = setup.config, setup.tx
  model_fn = _model_fn(config, setup.model_cfg)

  def init():
    _, params, rest = nnx.split(model_fn(), nnx.Param, ...)
    state = {"params": params, "opt_state": tx.init(params), "step": jnp.zeros((), jnp.int32),
             "rng": jax.random.key_data(jax.random.key(int(config.train.seed)))}
    return state, rest

  return jax.jit(init, out_shardings=(setup.state_shardings, setup.rest_shardings),
                 compiler_options=_init_compiler_options(setup))()


# Below this many parameters, initialising on XLA:CPU is cheaper compiled at level 0: LLVM's
# optimisation of the one RNG stream per parameter costs 3-9 s of compiling for the tiny CPU
# models, while level-0 code runs the draws ~5x slower (~0.15 s a million parameters).
_CPU_FAST_INIT_MAX_PARAMS = 10_000_000


def _init_compiler_options(setup: Setup) -> dict | None:
  """{xla_backend_optimization_level: 0} for a small model initialised on CPU, else None.

  The draws are the same threefry bits; the normal transform may round differently in the last
  bit (relative differences <= ~1e-7 from a level-3 build). GPU and TPU builds are unchanged."""
  if setup.mesh.devices.flat[0].platform != "cpu":
    return None
  n = sum(int(np.prod(a.shape)) for a in jax.tree.leaves(setup.abstract_params))
  return {"xla_backend_optimization_level": 0} if n <= _CPU_FAST_INIT_MAX_PARAMS else None


def fresh_rest(setup: Setup):
  """The non-trained state (RNG streams, buffers), rebuilt from the seed."""
  model_fn = _model_fn(setup.config, setup.model_cfg)
  # Under jit with out_shardings: works when the mesh spans several processes (device_put doesn't).
  return jax.jit(lambda: nnx.split(model_fn(), nnx.Param, ...)[2],
                 out_shardings=setup.rest_shardings)()


def batch_shardings(setup: Setup, batch_shapes: dict) -> dict:
  return {k: sharding.batch_sharding(setup.mesh, len(shape)) for k, (shape, _) in batch_shapes.items()}


def abstract_batch(setup: Setup, global_batch: int) -> dict:
  shapes = setup.task.batch_shapes(global_batch, pipelines.seq_len_for_shapes(setup.config))
  sh = batch_shardings(setup, shapes)
  return {k: jax.ShapeDtypeStruct(shape, dtype, sharding=sh[k]) for k, (shape, dtype) in shapes.items()}


def jit_train_step(setup: Setup, global_batch: int | None = None):
  """The jitted train step: state donated, shardings pinned in and out."""
  global_batch = global_batch or int(setup.config.train.global_batch_size)
  fn = step_lib.make_train_step(setup.task, setup.graphdef, setup.tx, setup.schedule)
  batch_sh = {k: v.sharding for k, v in abstract_batch(setup, global_batch).items()}
  return jax.jit(fn, in_shardings=(setup.state_shardings, setup.rest_shardings, batch_sh),
                 out_shardings=(setup.state_shardings, sharding.replicated(setup.mesh)),
                 donate_argnums=(0,))


def jit_eval_step(setup: Setup, global_batch: int):
  fn = step_lib.make_eval_step(setup.task, setup.graphdef)
  batch_sh = {k: v.sharding for k, v in abstract_batch(setup, global_batch).items()}
  rep = sharding.replicated(setup.mesh)
  return jax.jit(fn, in_shardings=(setup.state_shardings["params"], setup.rest_shardings, batch_sh,
                                   rep),
                 out_shardings=rep)


def global_batch(setup: Setup, local: dict[str, np.ndarray]) -> dict[str, jax.Array]:
  """This host's share of the batch -> global arrays split over (data, fsdp)."""
  if jax.process_count() == 1:  # one batched transfer
    return jax.device_put(local, {k: sharding.batch_sharding(setup.mesh, v.ndim)
                                  for k, v in local.items()})
  return {k: jax.make_array_from_process_local_data(
      sharding.batch_sharding(setup.mesh, v.ndim), v) for k, v in local.items()}


def param_count(abstract_params) -> int:
  return int(sum(np.prod(x.shape) for x in jax.tree.leaves(abstract_params)))
