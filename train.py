"""Trains a model: `python train.py --config configs/opt_tiny.py:softmax1 --workdir /tmp/run`.

Any config field can be overridden, e.g. `--config.train.num_steps=100 --config.mesh.fsdp=2`.
Running the same command on the same workdir resumes from its latest checkpoint. A resume whose
config changes the model, variant, data or optimizer is refused before anything is written;
--allow_config_change continues anyway and records the change in WORKDIR/config_changes.jsonl.
"""
import sys

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "configs/<preset>.py:<variant>",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory: checkpoints, metrics, config.")
_ALLOW_CHANGE = flags.DEFINE_bool(
    "allow_config_change", False,
    "Resume a workdir even though the config changes the model, variant, data or optimizer "
    "(recorded in WORKDIR/config_changes.jsonl).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # orbax logs every file it writes at INFO
  config = _CONFIG.value
  # Imported here so that jax.distributed.initialize() (in run) precedes any other JAX use.
  from outeffhop_jax.train import CheckpointRestoreError, ConfigChangeError, loop
  print(f"config {flags.FLAGS['config'].config_filename}, workdir {_WORKDIR.value}", flush=True)
  try:
    loop.run(config, _WORKDIR.value, allow_config_change=_ALLOW_CHANGE.value)
  except (ConfigChangeError, CheckpointRestoreError) as e:
    # The message is the whole story (what differs / which checkpoint and why): no traceback.
    sys.exit(f"train.py: {type(e).__name__}: {e}")


if __name__ == "__main__":
  app.run(main)
