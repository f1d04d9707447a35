"""Config validation that runs before anything is built: each error names the offending field."""
from __future__ import annotations

import math

from outeffhop_jax.train import families, sharding

_DTYPES = ("float32", "bfloat16", "float16")


def validate(config, num_devices: int, num_processes: int = 1) -> tuple[int, int, int]:
  """Raises ValueError("config.<field>: ...") on a bad value; returns the resolved mesh shape."""
  family = families.get(config.family)
  if config.variant not in family.variants:
    raise ValueError(f"config.variant: unknown {config.variant!r} (one of {family.variants})")
  _positive(config, "train.num_steps", "train.global_batch_size", "train.log_every",
            "train.checkpoint_every", *family.positive_fields)
  if config.train.compute_dtype not in _DTYPES:
    raise ValueError(f"config.train.compute_dtype: {config.train.compute_dtype!r} not in {_DTYPES}")
  if config.train.eval_every < 0:
    raise ValueError("config.train.eval_every: must be >= 0 (0 = only at the end)")
  if not any(config.data.dataset == p or (p.endswith(":") and config.data.dataset.startswith(p))
             for p in family.dataset_prefixes):
    names = ", ".join(f"'{p}NAME'" if p.endswith(":") else f"'{p}'"
                      for p in family.dataset_prefixes)
    raise ValueError(f"config.data.dataset: {config.data.dataset!r} is none of {names}")
  if config.optimizer.learning_rate <= 0:
    raise ValueError("config.optimizer.learning_rate: must be > 0")
  if config.optimizer.warmup_steps < 0:
    raise ValueError("config.optimizer.warmup_steps: must be >= 0")
  mesh = sharding.resolve_mesh_shape((config.mesh.data, config.mesh.fsdp, config.mesh.tensor),
                                     num_devices)
  batch_ways = mesh[0] * mesh[1]
  for field in ("global_batch_size", "eval_batch_size"):
    value = config.train[field]
    if value is None:
      continue
    if value % batch_ways:
      raise ValueError(f"config.train.{field} ({value}) must be divisible by data x fsdp = "
                       f"{mesh[0]} x {mesh[1]} = {batch_ways}")
    if value % num_processes:
      raise ValueError(f"config.train.{field} ({value}) must be divisible by the "
                       f"{num_processes} processes")
  return mesh


def _positive(config, *fields: str):
  for field in fields:
    section, name = field.split(".")
    value = config[section][name]
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0 \
        or not math.isfinite(value):
      raise ValueError(f"config.{field}: must be a positive number, got {value!r}")
