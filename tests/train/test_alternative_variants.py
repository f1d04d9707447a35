"""The sink alternatives as training variants: configs resolve, and tiny OPT / BERT learn with each."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from outeffhop_jax.train import config_lib, families, sharding
from outeffhop_jax.train import input as input_lib
from outeffhop_jax.train import setup as setup_lib
from outeffhop_jax.train import step as step_lib

NEW = ("sigmoid", "softplus", "stablemax", "softpick", "outgate")


@pytest.mark.parametrize("preset_name", ["opt_tiny", "bert_tiny", "vit_tiny", "study_opt_cpu"])
def test_presets_accept_the_new_variants(preset_name, preset):
  for variant in NEW:
    config = preset(preset_name, variant)
    cfg = input_lib.resolved_model_config(config, input_lib.tokenizer_for(config))
    if variant == "outgate":
      assert (cfg.normalizer, cfg.gate, cfg.gate_init) == ("softmax", "output_elementwise", 0.5)
    else:
      assert (cfg.normalizer, cfg.gate) == (variant, "none")


# LLVM's optimisation passes are most of the compile time of these few-step runs: off here.
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


@pytest.mark.parametrize("family", ["opt", "bert"])
def test_a_few_steps_lower_the_loss_for_every_new_variant(make_config, family):
  for variant in NEW:
    config = make_config(family, variant)
    config.model.num_layers = 1
    config.optimizer.update(learning_rate=3e-3, warmup_steps=1)
    # The training system's own pieces (config -> model config, task, optimizer, train step),
    # without the sharded init: an eager init is cheaper than compiling one.
    setup = setup_lib.build(config, sharding.make_mesh((1, 1, 1), jax.devices()[:1]))
    want = config_lib.variant_overrides(family, variant, 32)["normalizer"]
    assert setup.model_cfg.normalizer == want
    it = iter(input_lib.train_dataset(config, setup.tokenizer))
    batch = next(it)
    it.close()
    _, params, rest = nnx.split(families.build_model(family, setup.model_cfg, 0), nnx.Param, ...)
    state = {"params": params, "opt_state": setup.tx.init(params),
             "step": jnp.zeros((), jnp.int32), "rng": jax.random.key_data(jax.random.key(0))}
    step = jax.jit(step_lib.make_train_step(setup.task, setup.graphdef, setup.tx, setup.schedule))
    step = step.lower(state, rest, batch).compile(FAST_COMPILE)
    losses = []
    for _ in range(6):  # the same batch: the loss must fall
      state, metrics = step(state, rest, batch)
      losses.append(float(metrics["loss"]))
    assert np.isfinite(losses).all(), (variant, losses)
    assert losses[-1] < losses[0], (variant, losses)
