r"""OPT-style byte-level causal LM for a CPU (docs/metrics.md): 4 layers, d=128, 4 heads, seq 256.

Trains on the embedded corpus (CPython's own docs and source; no download) with AdamW lr 1e-3,
wd 0.1, beta2 0.95: 900 steps x 16 x 256 = 3.7 M tokens, about 5 minutes on 2 CPU cores.

  python train.py --config configs/opt_tiny.py:softmax1 --workdir /tmp/opt_tiny_softmax1
Variants: vanilla, softmax1, clipped, clipped1, gated, gated1, sigmoid, softplus, stablemax,
softpick (normalizers without a sink) and outgate (softmax + an output gate).
"""
from outeffhop_jax.train import config_lib


def get_config(arg=None):
  c = config_lib.base_config("opt", config_lib.parse_arg(arg), model_preset="tiny")
  c.model.update(d_model=128, num_layers=4, num_heads=4, d_ff=512)
  c.data.dataset = "embedded"
  c.data.seq_len = 256
  c.train.num_steps = 900
  c.train.global_batch_size = 16
  c.train.log_every = 25
  c.train.eval_every = 300
  c.train.num_eval_batches = 8
  c.train.checkpoint_every = 300
  c.optimizer.learning_rate = 1e-3
  c.optimizer.warmup_steps = 90
  c.optimizer.weight_decay = 0.1
  c.optimizer.b2 = 0.95
  return c
