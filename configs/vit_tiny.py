r"""ViT classifier for a CPU on scikit-learn's digits (8x8 grey, upsampled to 16x16; no download).

4 layers, d=128, 4 heads, patch 4 (16 patches + CLS).
  python train.py --config configs/vit_tiny.py:softmax1 --workdir /tmp/vit_tiny_softmax1
"""
from outeffhop_jax.train import config_lib


def get_config(arg=None):
  c = config_lib.base_config("vit", config_lib.parse_arg(arg), model_preset="tiny")
  c.model.update(d_model=128, num_layers=4, num_heads=4, d_ff=512, patch_size=4, num_classes=10)
  c.data.dataset = "embedded"
  c.data.image_size = 16
  c.data.num_channels = 1
  c.data.augment = "none"
  c.train.num_steps = 600
  c.train.global_batch_size = 64
  c.train.log_every = 25
  c.train.eval_every = 300
  c.train.num_eval_batches = -1  # the whole held-out split
  c.train.checkpoint_every = 200
  c.optimizer.learning_rate = 1e-3
  c.optimizer.warmup_steps = 60
  c.optimizer.weight_decay = 0.05
  c.optimizer.b2 = 0.999
  return c
