r"""The long-horizon CPU outlier study: study_opt_cpu's byte-level OPT trained to ~20 M tokens.

At 3 M tokens (study_opt_cpu) the vanilla model has heavy-tailed FFN outputs but no attention-sink
head yet; heads that park their mass on the first token appear later in training. Same model, data
and optimizer as study_opt_cpu (d=64, 4 layers, 4 heads, seq 64, batch 32, AdamW 3e-3, wd 0.1,
beta2 0.95), 10,000 steps x 32 x 64 = 20.5 M tokens, about 12 minutes a run on 2 idle cores.
Every 1,000-step checkpoint is kept, so the outlier metrics can be traced along training
(`python -m outeffhop_jax.analysis horizon WORKDIR`).

  python -m outeffhop_jax.analysis study --preset horizon_opt_cpu \
      --variants vanilla,softmax1,gated,outgate --seeds 3 --out runs/horizon
"""
from outeffhop_jax.train import config_lib


def get_config(arg=None):
  c = config_lib.sibling_config(__file__, "study_opt_cpu", arg)
  c.train.num_steps = 10_000
  c.train.log_every = 100
  c.train.eval_every = 1000
  c.train.checkpoint_every = 1000
  c.train.keep_checkpoints = 0  # all: the horizon trace reads every one
  return c
