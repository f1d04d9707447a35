r"""STanHop-Net on ETTh1 as in the papers: in_len 168, out_len 24, segments of 6 (docs/reference_results.md).

Crossformer's ETTh1 hyper-parameters: d_model 256, 4 heads, 3 encoder scales, d_ff 512, 10
routers, dropout 0.2, Adam lr 1e-4, batch 32. ETTh1.csv (date + 7 series) is not shipped:
  python train.py --config configs/stanhop_etth1.py:softmax1 --workdir /tmp/stanhop_etth1 \
    --config.data.dataset=csv:/path/to/ETTh1.csv
Splits: 12 / 4 / 4 months (Informer's). Variants: vanilla, softmax1, clipped, clipped1, gated,
gated1, gsh (learnable-alpha entmax, the STanHop paper's model), sparsemax.
"""
from outeffhop_jax.train import config_lib


def get_config(arg=None):
  c = config_lib.forecasting_config(arg, model_preset="stanhop-etth1")
  c.data.dataset = "csv:ETTh1.csv"
  c.data.split_rule = "ett_hour"
  c.model.update(in_len=168, out_len=24, seg_len=6)
  c.train.num_steps = 8_000  # about 30 epochs of the 8,449 train windows at batch 32
  c.train.global_batch_size = 32
  c.train.log_every = 100
  c.train.eval_every = 1_000
  c.train.num_eval_batches = -1
  c.train.checkpoint_every = 1_000
  c.optimizer.learning_rate = 1e-4
  c.optimizer.warmup_steps = 0
  c.optimizer.schedule = "constant"
  c.optimizer.weight_decay = 0.0
  c.optimizer.b2 = 0.999
  c.optimizer.grad_clip_norm = 0.0
  return config_lib.forecasting_finish(c)
