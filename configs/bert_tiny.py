r"""BERT-style byte-level masked LM for a CPU: 4 layers, d=128, 4 heads, seq 128, 15 % masking.

  python train.py --config configs/bert_tiny.py:softmax1 --workdir /tmp/bert_tiny_softmax1
"""
from outeffhop_jax.train import config_lib


def get_config(arg=None):
  c = config_lib.base_config("bert", config_lib.parse_arg(arg), model_preset="tiny")
  c.model.update(d_model=128, num_layers=4, num_heads=4, d_ff=512)
  c.data.dataset = "embedded"
  c.data.seq_len = 128
  c.train.num_steps = 600
  c.train.global_batch_size = 32
  c.train.log_every = 25
  c.train.eval_every = 300
  c.train.num_eval_batches = 8
  c.train.checkpoint_every = 200
  c.optimizer.learning_rate = 1e-3
  c.optimizer.warmup_steps = 60
  c.optimizer.weight_decay = 0.01
  c.optimizer.b2 = 0.999
  c.optimizer.eps = 1e-6
  return c
