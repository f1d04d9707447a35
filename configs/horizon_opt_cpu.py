r"""The long-horizon CPU outlier study: study_opt_cpu's byte-level OPT trained to ~20 M tokens.

At 3 M tokens (study_opt_cpu) the vanilla model has heavy-tailed FFN outputs but no attention-sink
head yet; heads that park their mass on the first token appear later in training. Same model, data
and optimizer as study_opt_cpu (d=64, 4 layers, 4 heads, seq 64, batch 32, AdamW 3e-3, wd 0.1,
beta2 0.95), 10,000 steps x 32 x 64 = 20.5 M tokens, about 25 minutes a run on 2 idle cores.
Every 1,000-step checkpoint is kept, so the outlier metrics can be traced along training
(`python -m outeffhop_jax.analysis horizon WORKDIR`).

  python -m outeffhop_jax.analysis study --preset horizon_opt_cpu \
      --variants vanilla,softmax1,gated,outgate --seeds 3 --out runs/horizon
"""
from outeffhop_jax.train import config_lib


def get_config(arg=None):
  c = config_lib.base_config("opt", config_lib.parse_arg(arg), model_preset="tiny")
  c.model.update(d_model=64, num_layers=4, num_heads=4, d_ff=256)
  c.data.dataset = "embedded"
  c.data.seq_len = 64
  c.train.num_steps = 10_000
  c.train.global_batch_size = 32
  c.train.log_every = 100
  c.train.eval_every = 1000
  c.train.num_eval_batches = 8
  c.train.checkpoint_every = 1000
  c.train.keep_checkpoints = 0  # all: the horizon trace reads every one
  c.optimizer.learning_rate = 3e-3
  c.optimizer.warmup_steps = 100
  c.optimizer.weight_decay = 0.1
  c.optimizer.b2 = 0.95
  return c
