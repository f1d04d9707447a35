"""Shared helpers for the training tests: very small configs of the real models."""
import importlib.util
import os

import pytest

from outeffhop_jax.train import config_lib

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_preset(name: str, variant: str = "softmax1"):
  """configs/<name>.py's get_config(variant), loaded by path (configs/ is not a package)."""
  spec = importlib.util.spec_from_file_location(f"_cfg_{name}",
                                                os.path.join(REPO, "configs", f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(variant)


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


@pytest.fixture(scope="session", autouse=True)
def compilation_cache(tmp_path_factory):
  """A persistent XLA cache for this session (cold at its start): subprocesses and repeated
  builds of the same program skip recompiling. Exported so train.py subprocesses share it."""
  import jax

  path = str(tmp_path_factory.mktemp("xla_cache"))
  settings = {"jax_compilation_cache_dir": path, "jax_persistent_cache_min_compile_time_secs": 0,
              "jax_persistent_cache_min_entry_size_bytes": 0}
  old_env = {k.upper(): os.environ.get(k.upper()) for k in settings}
  old_cfg = {k: getattr(jax.config, k) for k in settings}
  for k, v in settings.items():
    os.environ[k.upper()] = str(v)
    jax.config.update(k, v)
  yield path
  for k, v in old_env.items():
    if v is None:
      os.environ.pop(k, None)
    else:
      os.environ[k] = v
  for k, v in old_cfg.items():
    jax.config.update(k, v)


@pytest.fixture(name="preset")
def preset_fixture():
  """load_preset(name, variant) as a fixture (test modules cannot import conftest by name)."""
  return load_preset
