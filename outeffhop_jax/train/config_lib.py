"""Building blocks of the ml_collections configs in configs/: defaults and the attention variants.

A config has these sections (every field can be overridden on the command line,
e.g. `--config.train.num_steps=100 --config.mesh.fsdp=2`):
  family, variant, model_preset   which model (opt | bert | vit | stanhop), attention variant,
                                  model preset
  model       overrides for `XConfig.from_preset(model_preset, **model)` (the frozen dataclass)
  data        dataset ("embedded" | "tfds:NAME"), splits, tokenizer, sequence length / image size
  train       steps, batch, seed, logging / eval / checkpoint cadence, compute dtype
  optimizer   AdamW, schedule, clipping
  mesh        data, fsdp, tensor sizes (one may be -1: all remaining devices)
  distributed jax.distributed.initialize() switch and its optional arguments

The fields that follow from the variant (normalizer, gate, gate_init; clipped softmax's gamma from
data.seq_len) stay unset (None) in `model`: they are resolved when the run's model config is built
(`train.pipelines.resolved_model_config`), after command-line overrides, so `--config.variant=gated`
or `--config.data.seq_len=64` change them. A field set explicitly in `model` wins.
"""
from __future__ import annotations

import importlib.util
import os

import ml_collections
from ml_collections import config_dict

VARIANTS = ("vanilla", "softmax1", "clipped", "clipped1", "gated", "gated1",
            "sigmoid", "softplus", "stablemax", "softpick", "outgate")

# The field's other answers to the attention sink: a normalizer each, no gate (sigmoid:
# Ramapuram et al. 2025, softplus: LSSA of Gao & Spratling 2025, stablemax: Prieto et al. 2025,
# softpick: Zuhri et al. 2025; see ops.alternatives) ...
ALTERNATIVE_NORMALIZERS = {"sigmoid": "sigmoid", "softplus": "softplus", "stablemax": "stablemax",
                           "softpick": "softpick"}
# ... and Qiu et al.'s output gate on softmax attention. Their gate sigmoid(X W) has no bias, so it
# starts near sigmoid(0) = 0.5: here the bias starts at logit(0.5) = 0.
OUTPUT_GATE, OUTPUT_GATE_INIT = "output_elementwise", 0.5

# Clipped softmax stretch (Bondarenko et al.): zeta = 1 and gamma < 0. OPT uses gamma = -alpha / T
# with alpha = 12 (gamma = -12/512 at the paper's block of 512); BERT a fixed gamma = -0.025.
# ViT: the papers do not state their gamma; -0.003 is this project's default.
CLIP_ALPHA_OPT = 12.0
# STanHop-Net's gamma is this project's choice for its short segment sequences (8-28 keys): the BERT
# value of Bondarenko et al.
CLIP_GAMMA = {"bert": -0.025, "vit": -0.003, "stanhop": -0.025}
GATE_KIND = {"opt": "linear", "vit": "linear", "bert": "mlp", "stanhop": "linear"}
GATE_INIT = 0.25


# Families whose gamma scales with the sequence length: gamma = -alpha / seq_len.
CLIP_ALPHA = {"opt": CLIP_ALPHA_OPT}


def clip_gamma(family: str, seq_len: int) -> float:
  return -CLIP_ALPHA[family] / seq_len if family in CLIP_ALPHA else CLIP_GAMMA[family]


def variant_overrides(family: str, variant: str, seq_len: int) -> dict:
  """Model-config overrides (normalizer spec, gate) for one of VARIANTS."""
  if variant not in VARIANTS:
    raise ValueError(f"config variant: unknown {variant!r} (one of {VARIANTS})")
  if variant in ALTERNATIVE_NORMALIZERS:
    return {"normalizer": ALTERNATIVE_NORMALIZERS[variant]}
  if variant == "outgate":
    return {"normalizer": "softmax", "gate": OUTPUT_GATE, "gate_init": OUTPUT_GATE_INIT}
  one = variant.endswith("1")
  base = variant.rstrip("1")
  if base == "clipped":
    norm = f"{'clipped1' if one else 'clipped'}:{clip_gamma(family, seq_len)!r}:1.0"
  else:
    norm = "softmax1" if (one or base == "softmax") else "softmax"
  out = {"normalizer": norm}
  if base == "gated":
    out.update(gate=GATE_KIND[family], gate_init=GATE_INIT)
  return out


# config.model fields that follow from the variant unless set explicitly (None = unset).
VARIANT_FIELDS = ("normalizer", "gate", "gate_init", "learn_alpha")


def explicit_model_fields(config) -> dict:
  """config.model as a dict, without the variant's fields left unset (None)."""
  return {k: v for k, v in dict(config.model).items()
          if not (k in VARIANT_FIELDS and v is None)}


def base_config(family: str, variant: str, model_preset: str,
                variants: tuple[str, ...] = VARIANTS) -> ml_collections.ConfigDict:
  """The defaults of every config; `variant` must be one of `variants` (checked here, so that a
  misspelt ":variant" fails when the config is loaded)."""
  if variant not in variants:
    raise ValueError(f"config variant: unknown {variant!r} (one of {variants})")
  c = ml_collections.ConfigDict()
  c.family = family
  c.variant = variant
  c.model_preset = model_preset
  c.model = ml_collections.ConfigDict()  # explicit model fields; the variant's resolve later
  # The variant's fields, unset (None: from the variant) but there to be set explicitly on the
  # command line (--config.model.normalizer=...), which then wins over the variant.
  c.model.normalizer = config_dict.placeholder(str)
  c.model.gate = config_dict.placeholder(str)
  c.model.gate_init = config_dict.placeholder(float)

  c.data = ml_collections.ConfigDict()
  c.data.dataset = "embedded"
  c.data.data_dir = config_dict.placeholder(str)  # tfds data_dir (None: tfds' default)
  c.data.train_split = "train"
  c.data.eval_split = "validation"
  c.data.text_key = "text"
  c.data.image_key = "image"
  c.data.label_key = "label"
  c.data.tokenizer = "byte"  # or a path to a tokenizer.json (HF tokenizers)
  c.data.pad_vocab_to = 8  # model vocab = tokenizer vocab rounded up (shards over tensor axes)
  c.data.seq_len = 256
  c.data.mlm_probability = 0.15
  c.data.image_size = 32
  c.data.num_channels = 3
  c.data.augment = "none"  # none | flip | crop_flip
  c.data.mean = (0.5,)  # per channel (one value: all channels)
  c.data.std = (0.5,)
  c.data.shuffle_seed = 0
  c.data.prefetch = 2  # batches prepared ahead in a thread

  c.train = ml_collections.ConfigDict()
  c.train.num_steps = 1000
  c.train.global_batch_size = 16
  c.train.seed = 0
  c.train.compute_dtype = "float32"  # or bfloat16 (parameters stay float32)
  c.train.label_smoothing = 0.0
  c.train.log_every = 50
  c.train.eval_every = 500  # 0: only at the end
  c.train.num_eval_batches = 16  # -1: the whole eval split
  c.train.eval_batch_size = config_dict.placeholder(int)  # default: global_batch_size
  c.train.checkpoint_every = 500
  c.train.keep_checkpoints = 3
  c.train.async_checkpointing = True
  c.train.progress_bar = True
  c.train.tensorboard = True

  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.learning_rate = 1e-3
  c.optimizer.warmup_steps = 100
  c.optimizer.schedule = "cosine"  # cosine | linear | constant
  c.optimizer.end_lr_ratio = 0.1
  c.optimizer.b1 = 0.9
  c.optimizer.b2 = 0.95
  c.optimizer.eps = 1e-8
  c.optimizer.weight_decay = 0.1
  c.optimizer.grad_clip_norm = 1.0

  c.mesh = ml_collections.ConfigDict()
  c.mesh.data = -1
  c.mesh.fsdp = 1
  c.mesh.tensor = 1

  c.distributed = ml_collections.ConfigDict()
  c.distributed.initialize = False  # jax.distributed.initialize() before anything else
  c.distributed.coordinator_address = config_dict.placeholder(str)  # None: auto-detect
  c.distributed.num_processes = config_dict.placeholder(int)
  c.distributed.process_id = config_dict.placeholder(int)
  c.distributed.local_device_ids = config_dict.placeholder(str)  # e.g. "0,1,2,3"
  return c


def parse_arg(arg: str | None, default_variant: str = "softmax1") -> str:
  """The ":variant" part of `--config configs/x.py:variant` (also accepts "variant=...")."""
  arg = (arg or default_variant).strip()
  return arg.split("=", 1)[1] if arg.startswith("variant=") else arg


def config_from_file(path: str, arg: str | None = None):
  """get_config(arg) of the preset file at `path`, loaded by path (the configs folder is not a
  package)."""
  name = os.path.splitext(os.path.basename(path))[0]
  spec = importlib.util.spec_from_file_location(f"_preset_{name}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def sibling_config(preset_file: str, name: str, arg: str | None = None):
  """get_config(arg) of <folder of preset_file>/<name>.py: a preset built on another one."""
  return config_from_file(
      os.path.join(os.path.dirname(os.path.abspath(preset_file)), f"{name}.py"), arg)


def finish(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Returns `c` unchanged (kept for preset files that still call it).

  The variant used to be applied here, before command-line overrides, which then could not change
  it; it is now resolved with the model config (`variant_overrides`, called by
  `train.pipelines.resolved_model_config`).
  """
  return c


# ---- Forecasting (STanHop-Net) configs: configs/stanhop_*.py --------------------------------

# The OutEffHop study's variants (VARIANTS, with the "stanhop" clipping gamma and gate) on the
# Hopfield layers; vanilla = softmax. "gsh" is STanHop's own generalized sparse Hopfield (entmax,
# learnable alpha from 1.5), run with the vanilla options otherwise.
FORECASTING_EXTRA_VARIANTS = {"gsh": ("vanilla", "entmax:1.5", True),
                              "sparsemax": ("vanilla", "sparsemax", False)}


def forecasting_variant_overrides(variant: str) -> tuple[str, dict]:
  """(base variant, model overrides) for a forecasting variant or one of the extra ones."""
  if variant in FORECASTING_EXTRA_VARIANTS:
    base, norm, learn = FORECASTING_EXTRA_VARIANTS[variant]
    return base, {"normalizer": norm, "learn_alpha": learn, "gate": "none"}
  if variant not in VARIANTS:
    raise ValueError(f"config variant: unknown {variant!r} (one of "
                     f"{VARIANTS + tuple(FORECASTING_EXTRA_VARIANTS)})")
  # seq_len only matters for OPT's length-scaled clipping.
  return variant, {"learn_alpha": False, "gate": "none",
                   **variant_overrides("stanhop", variant, seq_len=0)}


def forecasting_config(arg, model_preset: str) -> ml_collections.ConfigDict:
  """base_config for family "stanhop" with the forecasting data fields.

  The variant (one of VARIANTS or FORECASTING_EXTRA_VARIANTS) is resolved into model fields when
  the model config is built, after command-line overrides.
  """
  c = base_config("stanhop", parse_arg(arg, "softmax1"), model_preset=model_preset,
                  variants=VARIANTS + tuple(FORECASTING_EXTRA_VARIANTS))
  c.model.learn_alpha = config_dict.placeholder(bool)  # GSH's learnable alpha: from the variant
  c.data.dataset = "embedded"  # or "csv:/path/ETTh1.csv"
  c.data.split_rule = "auto"  # auto | ett_hour | ett_minute | ratio
  c.data.columns = ()  # series to read (empty: every column but the date)
  c.train.tensorboard = False
  return c


def forecasting_finish(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Keeps data.seq_len (checked by the training system) equal to the model's in_len."""
  if "in_len" in c.model:
    c.data.seq_len = int(c.model.in_len)
  return c
