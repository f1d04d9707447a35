"""Ahead-of-time compile of the real sharded train step for a TPU topology, on this CPU machine."""
import importlib.util
import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_aot_compile_for_v5e_2x2():
  if importlib.util.find_spec("libtpu") is None:
    pytest.fail('libtpu is not installed: pip install "jax[tpu]" (the project\'s [tpu] extra); '
                "it holds the TPU compiler")
  cmd = [sys.executable, os.path.join(REPO, "tpu", "aot_compile.py"),
         f"--config={os.path.join(REPO, 'configs', 'opt_tiny.py')}:softmax1",
         "--topology=v5e:2x2", "--config.model.d_model=64", "--config.model.num_layers=2",
         "--config.data.seq_len=64", "--config.train.global_batch_size=8",
         "--config.mesh.data=2", "--config.mesh.fsdp=2"]
  # Several test processes may load libtpu at once; its lock file would refuse the second.
  env = dict(os.environ, JAX_PLATFORMS="cpu", ALLOW_MULTIPLE_LIBTPU_LOAD="1")
  out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  text = out.stdout
  assert "4 x TPU v5 lite" in text and "'data': 2, 'fsdp': 2" in text
  flops = float(re.search(r"flops per device per step\s+(\S+)", text).group(1))
  temp = re.search(r"temp_size_in_bytes\s+(\S+) GiB", text)
  assert flops > 1e8 and temp is not None
