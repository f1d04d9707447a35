"""The Mosaic TPU kernels compile ahead of time for named TPU topologies on this CPU machine.

libtpu carries the TPU compiler; it must be installed (the project's `tpu` extra), so a missing
libtpu fails this test rather than skipping it. The compile runs in a subprocess: libtpu probes for
TPU hardware when JAX initialises, and that must not touch the CPU test process.
"""
import importlib.util
import os
import pathlib
import subprocess
import sys

import pytest

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "tpu" / "aot_compile_attention.py"


def run_aot(*args):
  if importlib.util.find_spec("libtpu") is None:
    pytest.fail('libtpu is not installed: pip install "jax[tpu]" (the project\'s [tpu] extra).')
  env = dict(os.environ, JAX_PLATFORMS="cpu", ALLOW_MULTIPLE_LIBTPU_LOAD="1")
  env.pop("XLA_FLAGS", None)  # the fake CPU device count is for the CPU tests only
  proc = subprocess.run([sys.executable, str(SCRIPT), *args], env=env, capture_output=True,
                        text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-4000:]
  return [line for line in proc.stdout.splitlines() if line.startswith("compiled")]


@pytest.mark.parametrize("args", [
    # bf16, head_dim 128 (no-transpose layout), causal + segments + sinks, GQA 4:2, T < S.
    ("--topology", "v5e:2x2", "--seq_q", "256", "--seq_k", "512"),
    # f32, head_dim 64 (head-major layout), no mask, no sink, 256-blocks, on another generation.
    ("--topology", "v6e:2x2", "--dtype", "float32", "--head_dim", "64", "--no-causal",
     "--no-segments", "--no-sinks", "--block", "256"),
    ("--topology", "v4:2x2x1", "--head_dim", "64", "--kv_heads", "1", "--no-segments"),
])
def test_flash_attention_compiles_for_tpu(args):
  lines = run_aot("--kernel", "flash", *args)
  assert len(lines) == 2, lines
  assert "flash_sink_fwd" in lines[0]
  for name in ("flash_sink_fwd", "flash_sink_bwd_dq", "flash_sink_bwd_dkv"):
    assert name in lines[1]


def test_splash_attention_with_sinks_compiles_for_tpu():
  lines = run_aot("--kernel", "splash", "--topology", "v5e:2x2", "--kv_heads", "2")
  assert len(lines) == 2 and "splash_mha_fwd" in lines[0] and "splash_mha_dkv" in lines[1]
