r"""Where attention sinks appear on a CPU: opt_tiny (byte-level OPT, d=128, 4 layers, 4 heads) on
rows of 128 tokens, batch 32, AdamW 1e-3, wd 0.1, beta2 0.95, to 6,000 steps x 32 x 128 = 24.6 M
tokens, keeping every 500-step checkpoint for `python -m outeffhop_jax.analysis horizon`.

horizon_opt_cpu (d=64, rows of 64) reaches 20.5 M tokens with no sink head in vanilla (first-token
mass ~0.06); this wider model on longer rows was the next candidate for heads that park their
attention on the first token. Measured (vanilla, seed 0): no sink head by 24.6 M tokens either
(first-token mass 0.04-0.06 from step 1,500 on), 2,562 s of training on 2 CPU cores.

  python -m outeffhop_jax.analysis study --preset sinks_opt_cpu \
      --variants vanilla,softmax1,gated,outgate --seeds 3 --out runs/sinks
"""
from outeffhop_jax.train import config_lib


def get_config(arg=None):
  c = config_lib.sibling_config(__file__, "opt_tiny", arg)
  c.data.seq_len = 128
  c.train.global_batch_size = 32
  c.train.num_steps = 6000
  c.train.log_every = 100
  c.train.eval_every = 1000
  c.train.checkpoint_every = 500
  c.train.keep_checkpoints = 0  # all: the horizon trace reads every one
  c.optimizer.warmup_steps = 200
  return c
