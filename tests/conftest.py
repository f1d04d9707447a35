"""Test-wide setup: CPU unless a test asks otherwise, 8 fake host devices for the sharded paths, the
classic (non-partitionable) threefry (it compiles faster), and one persistent XLA compilation
cache per test session.

The first three must be set before JAX initialises, hence environment variables at import time.
"""
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
_flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in _flags:
  os.environ["XLA_FLAGS"] = (_flags + " --xla_force_host_platform_device_count=8").strip()
# Parallel test workers may each start a libtpu compile (the TPU ahead-of-time checks).
os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
# JAX's partitionable threefry (its default) compiles a new random draw of rank >= 3 about
# 2.5-7x slower on XLA:CPU (benchmarks/bench_threefry_compile.py); the tests draw hundreds of
# shapes (inputs, eager model initialisers), so they use the classic threefry, which cuts a third
# off the ops tests. Only the bits differ: no test compares against saved random values. Exported
# to the train.py subprocesses too (runs compared with in-process ones draw the same bits); the
# SIGTERM test runs train.py under JAX's default.
os.environ.setdefault("JAX_THREEFRY_PARTITIONABLE", "0")


import pytest  # noqa: E402  (after the environment above)


@pytest.fixture(scope="session")
def minilm():
  """(folder, FP32 BERTEncoder, tokenizer) of the packaged all-MiniLM-L6-v2, loaded once per worker.

  Read-only for the tests: whatever trains or quantizes builds its own copy.
  """
  from outeffhop_jax.models import hf, packaged

  path = packaged.checkpoint("all-MiniLM-L6-v2")
  return path, hf.from_pretrained(path), packaged.tokenizer(path)


@pytest.fixture(scope="session", autouse=True)
def compilation_cache(tmp_path_factory):
  """A persistent XLA cache for this test session (cold at its start), shared by the xdist workers
  and exported to the train.py subprocesses: the many tests that build the same tiny model compile
  each program once. Values do not depend on it (a hit returns the executable XLA would build)."""
  import jax

  base = tmp_path_factory.getbasetemp()
  if os.environ.get("PYTEST_XDIST_WORKER"):
    base = base.parent  # the session's folder, above each worker's own
  path = str(base / "xla_cache")
  os.makedirs(path, exist_ok=True)
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
