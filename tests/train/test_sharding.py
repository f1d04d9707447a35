"""Mesh construction, logical-axis rules, and equal losses on every mesh (8 fake CPU devices)."""
import dataclasses

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from outeffhop_jax.train import pipelines
from outeffhop_jax.train import setup as setup_lib
from outeffhop_jax.train import sharding


def test_resolve_mesh_shape():
  assert sharding.resolve_mesh_shape((-1, 1, 1), 8) == (8, 1, 1)
  assert sharding.resolve_mesh_shape((2, -1, 2), 8) == (2, 2, 2)
  with pytest.raises(ValueError, match="config.mesh"):
    sharding.resolve_mesh_shape((3, 1, 1), 8)
  with pytest.raises(ValueError, match="config.mesh"):
    sharding.resolve_mesh_shape((-1, 3, 1), 8)


def test_logical_to_spec_follows_rules_and_divisibility():
  mesh = sharding.make_mesh((2, 2, 2))
  assert sharding.logical_to_spec(("embed", "mlp"), (32, 64), mesh) == P("fsdp", "tensor")
  assert sharding.logical_to_spec(("vocab", "embed"), (264, 32), mesh) == P("tensor", "fsdp")
  unsplit = []
  # 5 heads do not split over tensor=2: replicated, and reported.
  assert sharding.logical_to_spec(("embed", "heads", "kv"), (32, 5, 8), mesh,
                                  unsplit=unsplit) == P("fsdp", None, None)
  assert unsplit and unsplit[0][0] == "heads"
  assert sharding.logical_to_spec(None, (3,), mesh) == P()


def _losses_and_params(config, mesh_shape, devices, batches):
  config = config.copy_and_resolve_references()
  config.mesh.data, config.mesh.fsdp, config.mesh.tensor = mesh_shape
  setup = setup_lib.build(config, sharding.make_mesh(mesh_shape, devices))
  state, rest = setup_lib.init_state(setup)
  step = setup_lib.jit_train_step(setup)
  losses = []
  for b in batches:
    state, m = step(state, rest, setup_lib.global_batch(setup, b))
    losses.append(float(m["loss"]))
  return losses, jax.device_get(jax.tree.leaves(state["params"])), setup


def test_same_loss_on_every_mesh(make_config):
  config = make_config("opt", "gated1")
  config.model.num_layers = 1  # compile time dominates this test
  setup0 = setup_lib.build(config, sharding.make_mesh((1, 1, 1), jax.devices()[:1]))
  it = iter(pipelines.train_dataset(config, setup0.tokenizer))
  batches = [next(it) for _ in range(3)]
  it.close()
  ref_losses, ref_params, _ = _losses_and_params(config, (1, 1, 1), jax.devices()[:1], batches)
  assert ref_losses[-1] < ref_losses[0]
  for shape in [(8, 1, 1), (2, 2, 2)]:  # every axis split, alone and together
    losses, params, setup = _losses_and_params(config, shape, jax.devices(), batches)
    np.testing.assert_allclose(losses, ref_losses, rtol=2e-5, err_msg=str(shape))
    for a, b in zip(params, ref_params):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5, err_msg=str(shape))
    if shape[2] > 1:  # tensor axis used: some parameter really is split over it
      specs = [s.spec for s in jax.tree.leaves(setup.state_shardings["params"])]
      assert any("tensor" in str(s) for s in specs)


def test_small_cpu_models_initialise_at_level_0_with_the_same_draws(make_config):
  """init_state compiles a small model's initialisation at XLA:CPU level 0 (cheaper to build);
  the parameters equal a default-level build of the same function up to float rounding."""
  from flax import nnx

  setup = setup_lib.build(make_config("opt", "softmax1"),
                          sharding.make_mesh((1, 1, 1), jax.devices()[:1]))
  assert setup_lib._init_compiler_options(setup) == {"xla_backend_optimization_level": 0}
  state, _ = setup_lib.init_state(setup)
  model_fn = setup_lib._model_fn(setup.config, setup.model_cfg)
  want = jax.jit(lambda: nnx.split(model_fn(), nnx.Param, ...)[1])()  # default level
  got, want = jax.tree.leaves(state["params"]), jax.tree.leaves(want)
  assert len(got) == len(want) > 10
  for a, b in zip(got, want):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
  assert any(np.std(np.asarray(a)) > 0 for a in got)  # real draws, not constants
  # Above the size limit the default level is kept.
  big = dataclasses.replace(setup, abstract_params={"w": jax.ShapeDtypeStruct(
      (setup_lib._CPU_FAST_INIT_MAX_PARAMS + 1,), np.float32)})
  assert setup_lib._init_compiler_options(big) is None
