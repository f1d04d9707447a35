"""One small study shared by the analysis tests: two OPT variants trained briefly by train.py."""
import os

import pytest

# A 2-layer, 32-wide byte-level OPT on 32-token rows: 300 steps take ~10 s of CPU; fewer leave a
# unigram model whose blocks barely matter (then no quantization error can show).
SMALL = ("model.d_model=32", "model.num_layers=2", "model.num_heads=4", "model.d_ff=64",
         "data.seq_len=32", "data.prefetch=0", "train.global_batch_size=16",
         "train.progress_bar=False", "train.tensorboard=False", "train.eval_every=0",
         "train.num_eval_batches=2", "train.checkpoint_every=300", "optimizer.warmup_steps=20",
         "optimizer.learning_rate=3e-3")
STEPS = 300


def study_argv(out, root, variants="vanilla,softmax1"):
  argv = ["study", "--preset", "opt_tiny", "--out", str(out), "--workdir_root", str(root),
          "--variants", variants, "--steps", str(STEPS), "--calib_batches", "2",
          "--calib_subsets", "3", "--seeds", "1"]
  for s in SMALL:
    argv += ["--set", s]
  return argv


@pytest.fixture(name="study_argv")
def study_argv_fixture():
  """study_argv(out, root, variants) as a fixture (test modules cannot import conftest by name)."""
  return study_argv


@pytest.fixture(scope="session")
def small_study(tmp_path_factory):
  """(out dir, workdir root, captured log lines) of `study` on two variants."""
  from outeffhop_jax.analysis import __main__ as cli

  base = tmp_path_factory.mktemp("study")
  out, root = base / "out", base / "runs"
  lines = []
  assert cli.main(study_argv(out, root), log=lines.append) == 0
  return out, root, lines


@pytest.fixture(scope="session")
def vanilla_workdir(small_study):
  _, root, _ = small_study
  return os.path.join(root, "opt_tiny_vanilla")
