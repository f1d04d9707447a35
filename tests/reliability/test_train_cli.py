"""`python train.py` as a user runs it, on a tiny opt_tiny (4 steps, d=32, one layer):

- configs: `:softmax1 --config.variant=gated` builds, logs and records the gated model;
- resume: a config that changes the run is refused and leaves the workdir byte-for-byte as it
  was; an explicitly allowed change resumes and is recorded;
- checkpoints: a damaged newest checkpoint is skipped with a warning naming its step and cause;
  when none restores, the error's first lines name the folder, each step and its cause.

One trained workdir (module fixture) is copied by each test; the runs share an XLA cache.
"""
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys

import jax
import pytest
from flax import nnx

from outeffhop_jax import data
from outeffhop_jax.models import OPT, OPTConfig

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_TINY = ["--config.model.d_model=32", "--config.model.num_layers=1", "--config.model.d_ff=64",
         "--config.data.seq_len=32", "--config.data.prefetch=0",
         "--config.train.global_batch_size=4", "--config.train.num_steps=4",
         "--config.train.log_every=2", "--config.train.checkpoint_every=2",
         "--config.train.eval_every=0", "--config.train.num_eval_batches=1",
         "--config.train.progress_bar=False", "--config.train.tensorboard=False",
         "--config.optimizer.warmup_steps=1"]
# Cheap compiles: these runs check bookkeeping, not speed (about 2x faster on CPU).
_FAST_XLA = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"


def _train(workdir, variant, *extra):
  cmd = [sys.executable, os.path.join(REPO, "train.py"),
         f"--config={os.path.join(REPO, 'configs', 'opt_tiny.py')}:{variant}",
         f"--workdir={workdir}", *_TINY, *extra]
  # One CPU device (the session's 8 fake ones only slow the compile here) and an XLA cache
  # shared by every run of this module: a resumed run reuses the first run's programs.
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": _FAST_XLA,
         "JAX_COMPILATION_CACHE_DIR": os.path.join(os.path.dirname(workdir), "..", "xla_cache"),
         "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
         "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}
  return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300, env=env)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """(workdir, stdout) of `:softmax1 --config.variant=gated`, checkpoints at steps 2 and 4."""
  root = tmp_path_factory.mktemp("cli")
  workdir = root / "runs" / "gated"
  r = _train(workdir, "softmax1", "--config.variant=gated")
  assert r.returncode == 0, r.stderr[-3000:]
  return workdir, r.stdout


def _copy(trained, tmp_path):
  dest = trained[0].parent / tmp_path.name  # beside the original: the same XLA cache
  shutil.copytree(trained[0], dest)
  return dest


def _snapshot(root):
  """{relative path: sha256 of the bytes} of every file, plus every folder (as None)."""
  out = {}
  for dirpath, dirnames, filenames in os.walk(root):
    for d in dirnames:
      out[os.path.relpath(os.path.join(dirpath, d), root)] = None
    for f in filenames:
      path = os.path.join(dirpath, f)
      with open(path, "rb") as fh:
        out[os.path.relpath(path, root)] = hashlib.sha256(fh.read()).hexdigest()
  return out


def _steps(path):
  return sorted(int(d) for d in os.listdir(path) if d.isdigit())


def _param_count(model_cfg) -> int:
  model = nnx.eval_shape(lambda: OPT(model_cfg, rngs=nnx.Rngs(0)))
  return sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


def test_variant_override_builds_logs_and_records_that_variant(trained):
  workdir, stdout = trained
  vocab = math.ceil(data.get_tokenizer("byte").vocab_size / 8) * 8  # data.pad_vocab_to = 8
  n_params = _param_count(OPTConfig.from_preset(
      "tiny", vocab_size=vocab, max_len=32, d_model=32, num_layers=1, num_heads=4, d_ff=64,
      normalizer="softmax", gate="linear", gate_init=0.25))
  assert f"opt/gated: normalizer softmax, gate linear (init 0.25), sinks none; {n_params:,} " \
         "parameters" in stdout, stdout
  stored = json.loads((workdir / "config.json").read_text())
  assert stored["variant"] == "gated"
  assert {k: stored["model_config"][k] for k in ("normalizer", "gate", "gate_init", "d_model")} \
      == {"normalizer": "softmax", "gate": "linear", "gate_init": 0.25, "d_model": 32}


def test_resume_with_a_changed_config_is_refused_and_leaves_the_workdir_unchanged(
    trained, tmp_path):
  workdir = _copy(trained, tmp_path)
  # ":vanilla", a new learning rate and a longer run (the cosine decay spans the run length).
  before = _snapshot(workdir)
  r = _train(workdir, "vanilla", "--config.train.num_steps=6",
             "--config.optimizer.learning_rate=0.002")
  assert r.returncode != 0
  lines = r.stderr.strip().splitlines()
  head = f"train.py: ConfigChangeError: {workdir} holds a run with a different config; refusing"
  starts = [i for i, line in enumerate(lines) if line.startswith(head)]
  assert starts, r.stderr[-3000:]
  tail = lines[starts[-1]:]
  for line in ("  variant: 'gated' -> 'vanilla'", "  model_config.gate: 'linear' -> 'none'",
               "  optimizer.learning_rate: 0.001 -> 0.002", "  train.num_steps: 4 -> 6"):
    assert line in tail, tail
  assert _snapshot(workdir) == before

  # A data change allowed explicitly, with new cadences (which need no permission): resumes from
  # step 4 and records the change. Same compiled programs as the first run: the cache serves.
  r = _train(workdir, "softmax1", "--config.variant=gated", "--config.data.shuffle_seed=1",
             "--config.train.log_every=1", "--config.train.checkpoint_every=1",
             "--allow_config_change")
  assert r.returncode == 0, r.stderr[-3000:]
  assert "resumed from the checkpoint at step 4" in r.stdout, r.stdout
  changes = [json.loads(l) for l in (workdir / "config_changes.jsonl").read_text().splitlines()]
  assert len(changes) == 1 and changes[0]["step"] == 4
  assert changes[0]["changes"] == {"data.shuffle_seed": [0, 1]}
  assert json.loads((workdir / "config.json").read_text())["data"]["shuffle_seed"] == 1


def test_damaged_checkpoints_fall_back_or_name_the_cause(trained, tmp_path):
  workdir = _copy(trained, tmp_path)
  ckpts = workdir / "checkpoints"
  assert _steps(ckpts) == [2, 4]
  # The newest checkpoint lost its _METADATA: warned, resumed from step 2, trained to 4 again.
  os.remove(ckpts / "4" / "state" / "_METADATA")
  r = _train(workdir, "softmax1", "--config.variant=gated")
  assert r.returncode == 0, r.stderr[-3000:]
  assert (f"checkpoint at step 4 ({ckpts / '4'}) cannot be restored: missing state/_METADATA"
          in r.stderr), r.stderr[-3000:]
  assert "resumed from the checkpoint at step 2" in r.stdout, r.stdout
  assert _steps(ckpts) == [2, 4]  # step 4 written again by the resumed run
  assert os.listdir(workdir / "unrestorable_checkpoints") == ["4"]  # the damaged one, kept

  # Every checkpoint's array data truncated: the error's first lines name folder, steps, causes.
  for step in _steps(ckpts):
    for root, _, files in os.walk(ckpts / str(step) / "state" / "ocdbt.process_0"):
      for f in files:
        with open(os.path.join(root, f), "r+b") as fh:
          fh.truncate(8)
  before = _snapshot(workdir)
  r = _train(workdir, "softmax1", "--config.variant=gated")
  assert r.returncode != 0
  # The error (after the per-step warnings; event-loop noise from orbax's abandoned reads may
  # follow it at exit) names the folder, then each step with its cause.
  lines = r.stderr.splitlines()
  head = f"train.py: CheckpointRestoreError: cannot restore any checkpoint in {ckpts}:"
  assert head in lines, r.stderr[-3000:]
  tail = lines[lines.index(head):][:3]
  assert tail[1].startswith(f"  step 4 ({ckpts / '4'}): ") and "OUT_OF_RANGE" in tail[1], tail
  assert tail[2].startswith(f"  step 2 ({ckpts / '2'}): ") and "OUT_OF_RANGE" in tail[2], tail
  assert _snapshot(workdir) == before  # nothing moved or written when nothing restores
