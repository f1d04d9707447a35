"""Fixtures of the analysis tests: one small study shared by them (two OPT variants trained briefly
by train.py), and a one-layer cut of the packaged MiniLM."""
import contextlib
import json
import os
import re
import shutil

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


@contextlib.contextmanager
def one_device_train_runs():
  """train.py subprocesses started inside see one CPU device instead of the suite's 8 fake ones.

  The studies here test analysis, not sharding (tests/train covers the sharded loop and its
  resume); on 2 cores an 8-way split of a tiny model's step costs ~30 % more compile and step time.
  """
  old = os.environ.get("XLA_FLAGS", "")
  os.environ["XLA_FLAGS"] = re.sub(r"--xla_force_host_platform_device_count=\d+", "", old).strip()
  try:
    yield
  finally:
    os.environ["XLA_FLAGS"] = old


@pytest.fixture(autouse=True)
def _one_device_train_runs():
  with one_device_train_runs():
    yield


@pytest.fixture(name="study_argv")
def study_argv_fixture():
  """study_argv(out, root, variants) as a fixture (test modules cannot import conftest by name)."""
  return study_argv


@pytest.fixture(scope="session")
def small_study(tmp_path_factory):
  """(out dir, workdir root, captured log lines) of `study` on two variants.

  Built once per test session: under pytest-xdist the workers share the folder above their own
  temporary folders, and the first worker to need the study trains it while the others wait on a
  file lock (it costs ~100 s of CPU, which two workers would otherwise spend twice)."""
  from filelock import FileLock
  from outeffhop_jax.analysis import __main__ as cli

  shared = (tmp_path_factory.getbasetemp().parent if os.environ.get("PYTEST_XDIST_WORKER")
            else tmp_path_factory.getbasetemp())
  base = shared / "shared_small_study"
  out, root, done = base / "out", base / "runs", base / "lines.json"
  with FileLock(str(shared / "shared_small_study.lock")):
    if not done.exists():
      lines = []
      # One of the four default W-settings: each setting is the same code at other bit widths
      # (test_report.py renders several; inspect's test quantizes W8A8 and W4A8).
      argv = study_argv(out, root) + ["--settings", "W8A8"]
      with one_device_train_runs():
        assert cli.main(argv, log=lines.append) == 0
      done.write_text(json.dumps(lines))
  return out, root, json.loads(done.read_text())


@pytest.fixture(scope="session")
def vanilla_workdir(small_study):
  _, root, _ = small_study
  return os.path.join(root, "opt_tiny_vanilla")


@pytest.fixture
def one_layer_minilm(tmp_path, monkeypatch):
  """The packaged all-MiniLM-L6-v2 cut to its first layer, patched in as the packaged checkpoint
  for this test: the same code paths as the six-layer model at a sixth of the compile time.
  Returns the folder."""
  from safetensors.numpy import save_file

  from outeffhop_jax.models import hf, packaged

  minilm_path = packaged.checkpoint("all-MiniLM-L6-v2")
  folder = tmp_path / "one_layer_minilm"
  folder.mkdir()
  with open(os.path.join(minilm_path, "config.json")) as f:
    config = json.load(f)
  config["num_hidden_layers"] = 1
  (folder / "config.json").write_text(json.dumps(config))
  state = {k: v for k, v in hf.read_safetensors(minilm_path).items()
           if "encoder.layer." not in k or "encoder.layer.0." in k}
  save_file(state, str(folder / "model.safetensors"))
  shutil.copyfile(os.path.join(minilm_path, "tokenizer.json"), folder / "tokenizer.json")
  monkeypatch.setattr(packaged, "checkpoint", lambda name="all-MiniLM-L6-v2": str(folder))
  return str(folder)
