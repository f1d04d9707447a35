"""Exact resume after SIGKILL, also when the kill lands while a checkpoint is being written."""
import os
import re
import signal
import subprocess
import sys
import time

import jax
import numpy as np
from flax import nnx

from outeffhop_jax.train import load_from_workdir

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# opt_tiny shrunk on the command line (this also exercises config_flags overrides).
_FLAGS = ["--config.model.d_model=32", "--config.model.num_layers=2", "--config.model.d_ff=64",
          "--config.data.seq_len=32", "--config.data.prefetch=2",
          "--config.train.global_batch_size=8", "--config.train.num_steps=20",
          "--config.train.log_every=5", "--config.train.eval_every=0",
          "--config.train.num_eval_batches=1", "--config.train.keep_checkpoints=3",
          "--config.train.tensorboard=False", "--config.optimizer.warmup_steps=4"]


def _cmd(workdir, *extra):
  return [sys.executable, os.path.join(REPO, "train.py"),
          f"--config={os.path.join(REPO, 'configs', 'opt_tiny.py')}:gated1",
          f"--workdir={workdir}", *_FLAGS, *extra]


def _train(workdir, *extra):
  subprocess.run(_cmd(workdir, *extra), check=True, cwd=REPO, capture_output=True, timeout=300)


def _params(workdir):
  run = load_from_workdir(str(workdir))
  return run.step, jax.device_get(jax.tree.leaves(nnx.state(run.model, nnx.Param)))


def _kill_when(workdir, predicate, *extra, timeout=240):
  """Starts training, polls the checkpoint folder every ~1 ms, SIGKILLs once predicate(names)."""
  proc = subprocess.Popen(_cmd(workdir, *extra), cwd=REPO, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  ckpt_dir = os.path.join(workdir, "checkpoints")
  deadline = time.time() + timeout
  try:
    while time.time() < deadline:
      names = os.listdir(ckpt_dir) if os.path.isdir(ckpt_dir) else []
      if predicate(names):
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return names
      assert proc.poll() is None, "training ended before the kill point"
      time.sleep(0.001)
    raise AssertionError("kill point not reached")
  finally:
    if proc.poll() is None:
      proc.kill()
      proc.wait()


def _complete(names):
  return sorted(int(n) for n in names if n.isdigit())


def test_sigkill_and_resume_is_exact(tmp_path):
  _train(tmp_path / "straight")
  step, want = _params(tmp_path / "straight")
  assert step == 20

  # Killed while a checkpoint (at step >= 6) is being written: orbax's temporary folder. The
  # resume then starts from the last complete checkpoint before it, so this also covers a kill
  # between checkpoints.
  torn = tmp_path / "torn"
  tmp_re = re.compile(r"^(\d+)\..*tmp")

  def writing(names):
    return any(m and int(m.group(1)) >= 6 for m in map(tmp_re.match, names))

  names = _kill_when(str(torn), writing, "--config.train.checkpoint_every=2")
  torn_step = max(int(tmp_re.match(n).group(1)) for n in names if tmp_re.match(n))
  left = os.listdir(torn / "checkpoints")
  assert str(torn_step) not in left  # the torn checkpoint never became a complete one
  last_complete = max(_complete(left))
  assert last_complete < torn_step
  step, _ = _params(torn)
  assert step == last_complete
  _train(torn, "--config.train.checkpoint_every=2")
  step, got = _params(torn)
  assert step == 20
  for a, b in zip(got, want):
    np.testing.assert_array_equal(a, b)


def test_sigterm_checkpoints_and_exits(tmp_path):
  workdir = tmp_path / "preempted"
  # Under JAX's default PRNG (tests/conftest.py switches the suite to the classic threefry).
  env = dict(os.environ, JAX_THREEFRY_PARTITIONABLE="1")
  proc = subprocess.Popen(_cmd(workdir, "--config.train.checkpoint_every=1000",
                               "--config.train.num_steps=100000"),
                          cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env=env)
  metrics = workdir / "metrics.jsonl"
  deadline = time.time() + 120
  while not (metrics.exists() and metrics.read_text().strip()) and time.time() < deadline:
    time.sleep(0.05)  # the first log line: training is under way
  proc.send_signal(signal.SIGTERM)
  out, _ = proc.communicate(timeout=120)
  assert proc.returncode == 0, out[-2000:]
  assert "preempted at step" in out
  step = int(re.search(r"preempted at step (\d+)", out).group(1))
  assert _complete(os.listdir(workdir / "checkpoints")) == [step]
