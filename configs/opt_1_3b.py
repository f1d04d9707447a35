r"""OPT-1.3B (24 layers, d=2048, 32 heads), the papers' OPT recipe scaled up; FSDP-sharded.

Meant for a TPU slice such as v5e-32 (mesh fsdp=32) or v4-32; see tpu/aot_compile.py for a
compile-only check of its per-device memory:
  python tpu/aot_compile.py --config configs/opt_1_3b.py:softmax1 --topology v5e:4x8
"""
from outeffhop_jax.train import config_lib


def get_config(arg=None):
  c = config_lib.base_config("opt", config_lib.parse_arg(arg), model_preset="opt-1.3b")
  c.model.update(vocab_size=50272, max_len=2048)
  c.data.dataset = "tfds:wikipedia/20230601.en"
  c.data.train_split = "train[:99%]"
  c.data.eval_split = "train[99%:]"
  c.data.seq_len = 2048
  c.train.num_steps = 125_000
  c.train.global_batch_size = 256
  c.train.compute_dtype = "bfloat16"
  c.train.log_every = 100
  c.train.eval_every = 5_000
  c.train.num_eval_batches = 50
  c.train.checkpoint_every = 1_000
  c.optimizer.learning_rate = 2e-4
  c.optimizer.warmup_steps = 2_000
  c.optimizer.schedule = "linear"
  c.optimizer.end_lr_ratio = 0.0
  c.optimizer.b2 = 0.95
  c.optimizer.weight_decay = 0.1
  c.mesh.data = 1
  c.mesh.fsdp = -1
  return c
