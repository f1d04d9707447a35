"""Shared helpers for the training tests: very small configs of the real models."""
import os

import pytest

from outeffhop_jax.train import config_lib

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_preset(name: str, variant: str = "softmax1"):
  """configs/<name>.py's get_config(variant), loaded by path (configs/ is not a package)."""
  return config_lib.config_from_file(os.path.join(REPO, "configs", f"{name}.py"), variant)


def small_config(family: str = "opt", variant: str = "softmax1", **train):
  """A real-model config small enough to compile in seconds: 2 layers, d=32, 4 heads."""
  c = config_lib.base_config(family, variant, model_preset="tiny")
  c.model.update(d_model=32, num_layers=2, num_heads=4, d_ff=64)
  if family == "vit":
    c.model.update(patch_size=4, num_classes=10)
    c.data.image_size, c.data.num_channels = 8, 1
  c.data.seq_len = 32
  c.data.prefetch = 0
  c.train.update(num_steps=6, global_batch_size=8, log_every=2, eval_every=0, num_eval_batches=2,
                 checkpoint_every=3, keep_checkpoints=2, progress_bar=False, tensorboard=False)
  c.optimizer.warmup_steps = 2
  c.train.update(train)
  return c


@pytest.fixture
def make_config():
  return small_config


@pytest.fixture(name="preset")
def preset_fixture():
  """load_preset(name, variant) as a fixture (test modules cannot import conftest by name)."""
  return load_preset
