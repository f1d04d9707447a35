"""End-to-end runs of the training loop (in process) on the real models, and what they leave."""
import math
import os

import jax
import numpy as np
import pytest
from flax import nnx

from outeffhop_jax.train import checkpoint as checkpoint_lib
from outeffhop_jax.train import evaluate, load_from_workdir, load_metrics, loop


@pytest.mark.parametrize("family,variant", [("opt", "softmax1"), ("bert", "clipped1"),
                                            ("vit", "gated")])
def test_run_writes_metrics_and_checkpoints(make_config, tmp_path, family, variant):
  config = make_config(family, variant, num_steps=6, eval_every=3)
  final = loop.run(config, str(tmp_path))
  assert math.isfinite(final["loss"]) and final["count"] > 0
  if family != "vit":
    assert final["perplexity"] == pytest.approx(math.exp(final["loss"]))
  lines = load_metrics(str(tmp_path))
  assert {l["step"] for l in lines if "train/loss" in l} == {2, 4, 6}
  assert [l["step"] for l in lines if "eval/loss" in l] == [3, 6]
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path / "checkpoints"), save_every=1, keep=0)
  assert ckpt.all_steps() == [3, 6]
  ckpt.close()
  # The analysis entry points: rebuild from the workdir and re-evaluate to the same numbers.
  run = load_from_workdir(str(tmp_path))
  assert run.step == 6
  again = evaluate(run.model, run.config)
  assert again["loss"] == pytest.approx(final["loss"], rel=1e-5)


def test_nan_stops_before_checkpointing(make_config, tmp_path):
  # An absurd learning rate blows the parameters up within a few steps.
  config = make_config("opt", "vanilla", num_steps=40, checkpoint_every=1, log_every=1)
  config.optimizer.learning_rate = 1e30
  config.optimizer.warmup_steps = 0
  with pytest.raises(FloatingPointError, match="non-finite loss or gradient at step (\\d+).*"
                                               "Last good checkpoint: step"):
    loop.run(config, str(tmp_path))
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path / "checkpoints"), save_every=1, keep=0)
  steps = ckpt.all_steps()
  ckpt.close()
  run = load_from_workdir(str(tmp_path))
  assert run.step == max(steps)
  for leaf in jax.tree.leaves(jax.device_get(nnx.state(run.model, nnx.Param))):
    assert np.isfinite(leaf).all()


def test_bad_config_fails_before_training(make_config, tmp_path):
  config = make_config("opt")
  config.mesh.data = 3
  with pytest.raises(ValueError, match="config.mesh"):
    loop.run(config, str(tmp_path / "a"))
  config = make_config("opt")
  config.model.max_len = 16  # the data asks for 32 positions
  with pytest.raises(ValueError, match="config.data.seq_len"):
    loop.run(config, str(tmp_path / "b"))
  config = make_config("opt")
  config.model_preset = "opt-7b"
  with pytest.raises(ValueError, match="config.model_preset.*opt-7b"):
    loop.run(config, str(tmp_path / "c"))
  config = make_config("opt")
  config.train.global_batch_size = 12
  with pytest.raises(ValueError, match="config.train.global_batch_size"):
    loop.run(config, str(tmp_path / "d"))
  assert not os.path.exists(tmp_path / "a" / "checkpoints")
