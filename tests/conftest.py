"""Test-wide setup: CPU unless a test asks otherwise, and 8 fake host devices for the sharded paths.

Both must be set before JAX initialises its backends, hence environment variables at import time.
"""
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
_flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in _flags:
  os.environ["XLA_FLAGS"] = (_flags + " --xla_force_host_platform_device_count=8").strip()
# Parallel test workers may each start a libtpu compile (the TPU ahead-of-time checks).
os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")


import pytest  # noqa: E402  (after the environment above)


@pytest.fixture(scope="session")
def minilm():
  """(folder, FP32 BERTEncoder, tokenizer) of the packaged all-MiniLM-L6-v2, loaded once per worker.

  Read-only for the tests: whatever trains or quantizes builds its own copy.
  """
  from outeffhop_jax.models import hf, packaged

  path = packaged.checkpoint("all-MiniLM-L6-v2")
  return path, hf.from_pretrained(path), packaged.tokenizer(path)
