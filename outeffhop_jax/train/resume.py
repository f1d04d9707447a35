"""What a workdir records about its run (config.json), and the check that a resume is the same run.

config.json holds the run's config plus "model_config": every field of the model config that was
built (the variant's normalizer / gate / clipped gamma, the vocabulary from the tokenizer, ...).

Before a run on an existing workdir writes anything, `check_resume` compares the new record with
the stored one. Fields that change the model, the variant, the data or the optimizer are refused
(`ConfigChangeError`, listing each `field: old -> new`); run-length, cadence and layout fields
(`MAY_CHANGE`) may change. `train.num_steps` may change only under a constant learning-rate
schedule: a cosine or linear decay is laid out over num_steps, so a new run length would change the
rate from the resumed step on (a cosine run extended from its end jumps from ~0 back to mid-peak).
`allow_change=True` accepts the change; the loop then appends it to workdir/config_changes.jsonl.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import time

CONFIG_FILE = "config.json"
CHANGES_FILE = "config_changes.jsonl"

# Fields that do not change what is trained: how long, how often to log / evaluate / checkpoint,
# how evaluation is batched, and how the computation is laid out over devices and hosts.
MAY_CHANGE = frozenset({
    "train.num_steps", "train.log_every", "train.eval_every", "train.num_eval_batches",
    "train.eval_batch_size", "train.checkpoint_every", "train.keep_checkpoints",
    "train.async_checkpointing", "train.progress_bar", "train.tensorboard", "data.prefetch"})
MAY_CHANGE_SECTIONS = ("mesh.", "distributed.")

_UNSET = "(unset)"


class ConfigChangeError(ValueError):
  """A resume whose config differs from the stored one in fields that change the run."""


def record(config, model_cfg) -> dict:
  """The JSON-ready dict config.json holds: the config's fields plus "model_config"."""
  out = json.loads(config.to_json_best_effort(sort_keys=True))
  out["model_config"] = json.loads(json.dumps(dataclasses.asdict(model_cfg), default=str))
  return out


def write_record(workdir: str, rec: dict):
  with open(os.path.join(workdir, CONFIG_FILE), "w") as f:
    json.dump(rec, f, indent=1, sort_keys=True)


def stored_record(workdir: str) -> dict | None:
  """The stored config.json as a dict (None when absent); a damaged file is an error naming it."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError) as e:
    raise ValueError(f"{path}: cannot read the stored config ({e}); refusing to resume over it "
                     "(move the workdir aside or repair the file)") from None


def has_run(workdir: str) -> bool:
  """True when workdir holds a previous run (config.json or checkpoint entries)."""
  ckpts = os.path.join(workdir, "checkpoints")
  return (os.path.exists(os.path.join(workdir, CONFIG_FILE))
          or (os.path.isdir(ckpts) and bool(os.listdir(ckpts))))


def _flatten(d: dict, prefix: str = "") -> dict:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flatten(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def differences(old: dict, new: dict) -> list[tuple[str, object, object]]:
  """[(field, old, new)] of the fields that differ and may not change on a resume.

  The model is compared through "model_config" (what was built). A record from before
  "model_config" existed is compared on what it holds: its explicit `model` fields against the
  same fields of the new model config.
  """
  new = json.loads(json.dumps(new))  # tuples -> lists, as in the stored JSON
  flat_old = _flatten({k: v for k, v in old.items() if k not in ("model", "model_config")})
  flat_new = _flatten({k: v for k, v in new.items() if k not in ("model", "model_config")})
  if "model_config" in old:
    flat_old.update(_flatten(old["model_config"], "model_config."))
    flat_new.update(_flatten(new["model_config"], "model_config."))
  else:
    for k, v in _flatten(old.get("model", {})).items():
      flat_old[f"model_config.{k}"] = v
      flat_new[f"model_config.{k}"] = new["model_config"].get(k, _UNSET)
  # The decay of a cosine / linear schedule spans train.num_steps: there it is not a run length.
  schedule_free = {flat_old.get("optimizer.schedule"), flat_new.get("optimizer.schedule")} \
      == {"constant"}
  out = []
  for field in sorted(set(flat_old) | set(flat_new)):
    if field == "train.num_steps" and not schedule_free:
      pass
    elif field in MAY_CHANGE or field.startswith(MAY_CHANGE_SECTIONS):
      continue
    a, b = flat_old.get(field, _UNSET), flat_new.get(field, _UNSET)
    if a != b:
      out.append((field, a, b))
  return out


def check_resume(workdir: str, new: dict, *, allow_change: bool = False) -> list:
  """Compares `new` (a `record`) with workdir's stored config; reads only, writes nothing.

  Returns the differences (empty for a fresh workdir or the same run); raises ConfigChangeError
  listing them unless allow_change.
  """
  old = stored_record(workdir)
  if old is None:
    if has_run(workdir):
      logging.warning("%s has checkpoints but no %s: the resumed config cannot be checked",
                      workdir, CONFIG_FILE)
    return []
  diffs = differences(old, new)
  if diffs and not allow_change:
    lines = "\n".join(f"  {f}: {a!r} -> {b!r}" for f, a, b in diffs)
    raise ConfigChangeError(
        f"{workdir} holds a run with a different config; refusing to resume it (nothing was "
        f"written). Changed field(s), stored -> new:\n{lines}\n"
        f"Only run-length, cadence and layout fields may change on a resume "
        f"({', '.join(sorted(MAY_CHANGE))}, mesh.*, distributed.*); train.num_steps only "
        f"with optimizer.schedule='constant', since a cosine or linear decay spans it and a new "
        f"length changes the learning rate from the resumed step on. Use a new --workdir, or "
        f"pass --allow_config_change (run(..., allow_config_change=True)) to continue this run "
        f"with the new values; the change is then recorded in {CHANGES_FILE}.")
  return diffs


def record_changes(workdir: str, step: int, diffs: list):
  """Appends one JSON line {"time", "step", "changes": {field: [old, new]}} to CHANGES_FILE."""
  line = {"time": time.time(), "step": int(step),
          "changes": {f: [a, b] for f, a, b in diffs}}
  with open(os.path.join(workdir, CHANGES_FILE), "a") as f:
    f.write(json.dumps(line) + "\n")
