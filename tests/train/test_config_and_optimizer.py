"""Presets x variants resolve to model configs; bad values are named; the decay mask and schedule."""
import jax
import numpy as np
import pytest
from flax import nnx

from outeffhop_jax.train import checks, config_lib, families, optimizer
from outeffhop_jax.train import input as input_lib


PRESETS = ("opt_tiny", "bert_tiny", "vit_tiny", "opt_125m", "opt_1_3b", "bert_base", "vit_s16")


@pytest.mark.parametrize("preset_name", PRESETS)
def test_every_preset_and_variant_resolves(preset_name, preset):
  for variant in config_lib.VARIANTS:
    config = preset(preset_name, variant)
    model_cfg = input_lib.resolved_model_config(config, input_lib.tokenizer_for(config))
    if variant == "vanilla":
      assert model_cfg.normalizer == "softmax" and model_cfg.gate == "none"
    if variant.endswith("1"):
      assert "1" in model_cfg.normalizer.split(":")[0]
    if variant.startswith("gated"):
      assert model_cfg.gate == ("mlp" if config.family == "bert" else "linear")
      assert model_cfg.gate_init == 0.25


def _resolved(config):
  return input_lib.resolved_model_config(config, input_lib.tokenizer_for(config))


def test_clipped_gamma_follows_the_papers(preset):
  assert _resolved(preset("opt_125m", "clipped")).normalizer == "clipped:-0.0234375:1.0"  # -12/512
  assert _resolved(preset("bert_base", "clipped1")).normalizer == "clipped1:-0.025:1.0"


def test_full_scale_hyperparameters(preset):
  c = preset("opt_125m")
  assert (c.train.num_steps, c.train.global_batch_size, c.data.seq_len) == (125_000, 192, 512)
  assert (c.optimizer.learning_rate, c.optimizer.b2, c.optimizer.weight_decay) == (4e-4, 0.95, 0.1)
  c = preset("bert_base")
  assert (c.train.num_steps, c.train.global_batch_size, c.data.seq_len,
          c.optimizer.learning_rate) == (200_000, 256, 128, 1e-4)


def test_validation_names_fields(preset):
  c = preset("opt_tiny")
  assert checks.validate(c, 8) == (8, 1, 1)
  c.mesh.tensor = 3
  with pytest.raises(ValueError, match="config.mesh"):
    checks.validate(c, 8)
  c = preset("opt_tiny")
  c.train.num_steps = 0
  with pytest.raises(ValueError, match="config.train.num_steps"):
    checks.validate(c, 8)
  with pytest.raises(ValueError, match="unknown 'soft'"):
    preset("opt_tiny", "soft")
  c = preset("opt_tiny")
  c.model.hidden = 3
  with pytest.raises(ValueError, match="config.model.*hidden"):
    input_lib.resolved_model_config(c, input_lib.tokenizer_for(c))


def test_weight_decay_mask_on_the_real_model(preset):
  c = preset("bert_tiny", "gated1")
  model_cfg = input_lib.resolved_model_config(c, input_lib.tokenizer_for(c))
  params = nnx.state(nnx.eval_shape(lambda: families.build_model("bert", model_cfg, 0)), nnx.Param)
  mask = optimizer.decay_mask(params)
  flat = {"/".join(str(getattr(k, "key", k)) for k in path).removesuffix("/.value"): bool(v)
          for path, v in jax.tree_util.tree_leaves_with_path(mask)}
  decayed = {k for k, v in flat.items() if v}
  assert decayed and all(k.endswith(("kernel", "embedding", "w", "w1", "w2")) for k in decayed)
  assert not any(v for k, v in flat.items() if k.endswith(("bias", "scale", "b", "b1", "b2")))


def test_schedule_warms_up_then_decays(preset):
  c = preset("opt_tiny").optimizer
  c.warmup_steps = 60
  sched = optimizer.make_schedule(c, 600)
  lrs = np.array([sched(s) for s in (0, 30, 60, 300, 600)])
  assert lrs[0] == 0 and lrs[1] == pytest.approx(5e-4) and lrs[2] == pytest.approx(1e-3)
  assert lrs[2] > lrs[3] > lrs[4] == pytest.approx(1e-4)
