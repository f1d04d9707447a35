"""Trains a model: `python train.py --config configs/opt_tiny.py:softmax1 --workdir /tmp/run`.

Any config field can be overridden, e.g. `--config.train.num_steps=100 --config.mesh.fsdp=2`.
Running the same command on the same workdir resumes from its latest checkpoint.
"""
from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "configs/<preset>.py:<variant>",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory: checkpoints, metrics, config.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # orbax logs every file it writes at INFO
  config = _CONFIG.value
  # Imported here so that jax.distributed.initialize() (in run) precedes any other JAX use.
  from outeffhop_jax.train import loop
  print(f"config {flags.FLAGS['config'].config_filename}, workdir {_WORKDIR.value}", flush=True)
  loop.run(config, _WORKDIR.value)


if __name__ == "__main__":
  app.run(main)
