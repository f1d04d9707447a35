r"""The tiny CPU outlier study: a byte-level OPT that grows outliers within minutes.

opt_tiny (d=128, seq 256, lr 1e-3) needs ~25 M tokens (~30 min a variant) to reach an avg
kurtosis of ~6 (docs/metrics.md). Narrower (d=64), shorter rows (seq 64: 4x more BOS-started rows per
token) and a 3x higher peak learning rate (3e-3) reach avg kurtosis ~7 (max ~38, in an FFN output)
in 1,500 steps x 32 x 64 = 3.1 M tokens, about 4 minutes a variant on 2 idle cores.

  python -m outeffhop_jax.analysis study --preset study_opt_cpu --out /tmp/study
Variants: vanilla, softmax1, clipped, clipped1, gated, gated1, sigmoid, softplus, stablemax,
softpick (normalizers without a sink) and outgate (softmax + an output gate).
"""
from outeffhop_jax.train import config_lib


def get_config(arg=None):
  c = config_lib.base_config("opt", config_lib.parse_arg(arg), model_preset="tiny")
  c.model.update(d_model=64, num_layers=4, num_heads=4, d_ff=256)
  c.data.dataset = "embedded"
  c.data.seq_len = 64
  c.train.num_steps = 1500
  c.train.global_batch_size = 32
  c.train.log_every = 50
  c.train.eval_every = 500
  c.train.num_eval_batches = 8
  c.train.checkpoint_every = 500
  c.optimizer.learning_rate = 3e-3
  c.optimizer.warmup_steps = 100
  c.optimizer.weight_decay = 0.1
  c.optimizer.b2 = 0.95
  return c
