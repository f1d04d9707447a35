"""AdamW with linear warmup, cosine/linear decay, global-norm clipping and a weight-decay mask."""
from __future__ import annotations

import re

import jax
import optax

# Leaf names that are biases or normalisation scales, whatever their rank (the gates' MLP bias b1
# is 2-D), and ViT's CLS token / position table (as timm/DeiT): these get no weight decay.
_NO_DECAY = re.compile(
    r"^(bias|b\d*|scale|sinks?|cls_token|position_embeddings)$|norm|(^|_)ln(_|\d|$)",
    re.IGNORECASE)


def make_schedule(cfg, num_steps: int) -> optax.Schedule:
  """cfg: learning_rate, warmup_steps, schedule ("cosine" | "linear" | "constant"), end_lr_ratio."""
  peak, warmup = float(cfg.learning_rate), int(cfg.warmup_steps)
  end = peak * float(cfg.end_lr_ratio)
  decay_steps = max(num_steps - warmup, 1)
  if cfg.schedule == "cosine":
    decay = optax.cosine_decay_schedule(peak, decay_steps, alpha=float(cfg.end_lr_ratio))
  elif cfg.schedule == "linear":
    decay = optax.linear_schedule(peak, end, decay_steps)
  elif cfg.schedule == "constant":
    decay = optax.constant_schedule(peak)
  else:
    raise ValueError(f"config.optimizer.schedule: unknown {cfg.schedule!r} "
                     "(cosine | linear | constant)")
  if warmup <= 0:
    return decay
  return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), decay], [warmup])


def decay_mask(params):
  """True where weight decay applies: matrices, except bias- and norm-like leaves."""

  def keep(path, leaf):
    names = [str(getattr(k, "key", getattr(k, "name", k))) for k in path]
    names = [n for n in names if n not in ("value", "raw_value")]  # nnx.Variable's own attribute
    if getattr(leaf, "ndim", 0) < 2:
      return False
    return not any(_NO_DECAY.search(n) for n in names[-2:])

  return jax.tree_util.tree_map_with_path(keep, params)


def make_optimizer(cfg, num_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """cfg: the config's optimizer section (plus schedule fields); returns (tx, schedule)."""
  schedule = make_schedule(cfg, num_steps)
  parts = []
  if cfg.grad_clip_norm and cfg.grad_clip_norm > 0:
    parts.append(optax.clip_by_global_norm(float(cfg.grad_clip_norm)))
  parts.append(optax.adamw(schedule, b1=float(cfg.b1), b2=float(cfg.b2), eps=float(cfg.eps),
                           weight_decay=float(cfg.weight_decay), mask=decay_mask))
  return optax.chain(*parts), schedule
