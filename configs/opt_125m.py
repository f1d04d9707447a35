r"""OPT-125m pre-training as in the papers (docs/reference_results.md): 12 layers, d=768, 12 heads,
block 512, 125k steps, batch 192, AdamW(0.9, 0.95) lr 4e-4, wd 0.1.

Data: a prepared tfds text dataset (the papers used BookCorpus + Wikipedia) and OPT's GPT-2 BPE
tokenizer file (vocab padded to 50272), e.g.
  python train.py --config configs/opt_125m.py:softmax1 --workdir gs://bucket/opt125m_softmax1 \
    --config.data.dataset=tfds:wikipedia/20230601.en --config.data.data_dir=gs://bucket/tfds \
    --config.data.tokenizer=/path/to/opt/tokenizer.json
Mesh: data parallel by default; --config.mesh.fsdp=N shards parameters and optimizer state.
"""
from outeffhop_jax.train import config_lib


def get_config(arg=None):
  c = config_lib.base_config("opt", config_lib.parse_arg(arg), model_preset="opt-125m")
  c.model.update(vocab_size=50272, max_len=2048)
  c.data.dataset = "tfds:wikipedia/20230601.en"
  c.data.train_split = "train[:99%]"
  c.data.eval_split = "train[99%:]"
  c.data.seq_len = 512
  c.train.num_steps = 125_000
  c.train.global_batch_size = 192
  c.train.compute_dtype = "bfloat16"
  c.train.log_every = 100
  c.train.eval_every = 5_000
  c.train.num_eval_batches = 50
  c.train.checkpoint_every = 2_500
  c.optimizer.learning_rate = 4e-4
  c.optimizer.warmup_steps = 2_000
  c.optimizer.schedule = "linear"
  c.optimizer.end_lr_ratio = 0.0
  c.optimizer.b1 = 0.9
  c.optimizer.b2 = 0.95
  c.optimizer.weight_decay = 0.1
  c.optimizer.grad_clip_norm = 1.0
  return c
