r"""Tiny STanHop-Net for a CPU: 48 -> 12 steps, segments of 6, d=32, 2 heads, 2 encoder scales.

Trains on the embedded monthly series (statsmodels' Mauna Loa CO2 and El Nino SST, 2 series; no
download) in about a minute on 2 CPU cores:
  python train.py --config configs/stanhop_tiny.py:softmax1 --workdir /tmp/stanhop_tiny_softmax1
Variants: vanilla (softmax), softmax1 (OutEffHop), clipped, clipped1, gated, gated1 (a per-head
gate on the Hopfield query), sigmoid, softplus, stablemax, softpick, outgate (an output gate on the
Hopfield query), plus gsh (the paper's learnable-alpha entmax) and sparsemax.
Any CSV in the ETT / WTH layout: --config.data.dataset=csv:/path/file.csv
"""
from outeffhop_jax.train import config_lib


def get_config(arg=None):
  c = config_lib.forecasting_config(arg, model_preset="tiny")
  c.model.update(in_len=24, out_len=12, seg_len=6, d_model=32, num_heads=2, num_layers=2, d_ff=64,
                 num_routers=4)
  c.train.num_steps = 300
  c.train.global_batch_size = 32
  c.train.log_every = 25
  c.train.eval_every = 100
  c.train.num_eval_batches = -1
  c.train.checkpoint_every = 100
  c.optimizer.learning_rate = 1e-3
  c.optimizer.warmup_steps = 20
  c.optimizer.weight_decay = 0.0
  c.optimizer.b2 = 0.999
  return config_lib.forecasting_finish(c)
