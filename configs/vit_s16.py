r"""ViT-S/16 on ImageNet-1k, 150 epochs (the papers' run; DeiT-style recipe without RandAugment /
mixup, which this project does not implement): batch 1024, AdamW lr 1e-3, wd 0.05, 5 warmup epochs,
cosine decay, label smoothing 0.1, random-resized crop + flip.

  python train.py --config configs/vit_s16.py:gated1 --workdir gs://bucket/vit_gated1 \
    --config.data.data_dir=gs://bucket/tfds        # imagenet2012 prepared as array_record
"""
from outeffhop_jax.train import config_lib

_STEPS_PER_EPOCH = 1_281_167 // 1024


def get_config(arg=None):
  c = config_lib.base_config("vit", config_lib.parse_arg(arg), model_preset="vit-s16")
  c.model.update(num_classes=1000)
  c.data.dataset = "tfds:imagenet2012"
  c.data.eval_split = "validation"
  c.data.image_size = 224
  c.data.num_channels = 3
  c.data.augment = "crop_flip"
  c.data.mean = (0.485, 0.456, 0.406)
  c.data.std = (0.229, 0.224, 0.225)
  c.train.num_steps = 150 * _STEPS_PER_EPOCH
  c.train.global_batch_size = 1024
  c.train.compute_dtype = "bfloat16"
  c.train.label_smoothing = 0.1
  c.train.log_every = 100
  c.train.eval_every = 5 * _STEPS_PER_EPOCH
  c.train.num_eval_batches = -1
  c.train.checkpoint_every = _STEPS_PER_EPOCH
  c.optimizer.learning_rate = 1e-3
  c.optimizer.warmup_steps = 5 * _STEPS_PER_EPOCH
  c.optimizer.schedule = "cosine"
  c.optimizer.end_lr_ratio = 0.01
  c.optimizer.b2 = 0.999
  c.optimizer.weight_decay = 0.05
  return c
