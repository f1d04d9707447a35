r"""BERT-base masked-LM pre-training as in the papers: 12 layers, d=768, seq 128, 200k steps,
batch 256, lr 1e-4 (AdamW 0.9/0.999, wd 0.01, 10k warmup, linear decay), 15 % masking (80/10/10).

Data: a prepared tfds text dataset (the papers used BookCorpus + Wikipedia) and BERT's WordPiece
tokenizer file (bert-base-uncased tokenizer.json):
  python train.py --config configs/bert_base.py:clipped --workdir gs://bucket/bert_clipped \
    --config.data.tokenizer=/path/to/bert/tokenizer.json --config.data.data_dir=gs://bucket/tfds
"""
from outeffhop_jax.train import config_lib


def get_config(arg=None):
  c = config_lib.base_config("bert", config_lib.parse_arg(arg), model_preset="bert-base")
  c.model.update(vocab_size=30522, max_len=512)
  c.data.dataset = "tfds:wikipedia/20230601.en"
  c.data.train_split = "train[:99%]"
  c.data.eval_split = "train[99%:]"
  c.data.seq_len = 128
  c.train.num_steps = 200_000
  c.train.global_batch_size = 256
  c.train.compute_dtype = "bfloat16"
  c.train.log_every = 100
  c.train.eval_every = 10_000
  c.train.num_eval_batches = 50
  c.train.checkpoint_every = 5_000
  c.optimizer.learning_rate = 1e-4
  c.optimizer.warmup_steps = 10_000
  c.optimizer.schedule = "linear"
  c.optimizer.end_lr_ratio = 0.0
  c.optimizer.b2 = 0.999
  c.optimizer.eps = 1e-6
  c.optimizer.weight_decay = 0.01
  return c
