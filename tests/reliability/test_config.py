"""Configs: fields derived from the variant follow command-line overrides; resume diffs are named.

The overrides are applied the way `--config.variant=...` / `--config.data.seq_len=...` apply them:
on the ConfigDict that get_config returned. The expected values are written out by hand from the
papers' rules (OPT clipped gamma = -12 / T), not taken from the code under test.
"""
import os

import ml_collections
import pytest

from outeffhop_jax.models import OPTConfig
from outeffhop_jax.train import config_lib, pipelines
from outeffhop_jax.train import resume

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _preset(name: str, variant: str):
  return config_lib.config_from_file(os.path.join(REPO, "configs", f"{name}.py"), variant)


def _resolved(config):
  return pipelines.resolved_model_config(config, pipelines.tokenizer_for(config))


def test_derived_fields_follow_overrides_made_after_get_config():
  c = _preset("opt_tiny", "softmax1")
  c.variant = "gated"  # what --config.variant=gated does
  m = _resolved(c)
  assert (m.normalizer, m.gate, m.gate_init) == ("softmax", "linear", 0.25)

  c = _preset("opt_tiny", "clipped")
  c.data.seq_len = 64  # --config.data.seq_len=64: gamma = -12 / 64, not -12 / 256
  assert _resolved(c).normalizer == "clipped:-0.1875:1.0"

  c = _preset("bert_tiny", "vanilla")
  c.variant = "outgate"
  m = _resolved(c)
  assert (m.normalizer, m.gate, m.gate_init) == ("softmax", "output_elementwise", 0.5)

  c = _preset("stanhop_tiny", "softmax1")
  c.variant = "gsh"  # STanHop's own variant: learnable-alpha entmax
  c.data.dataset = "embedded"
  m = pipelines.resolved_model_config(c)
  assert (m.normalizer, m.learn_alpha, m.gate) == ("entmax:1.5", True, "none")

  # A field set explicitly in config.model still wins over the variant's.
  c = _preset("opt_tiny", "gated")
  c.model.normalizer = "softmax1"
  m = _resolved(c)
  assert (m.normalizer, m.gate) == ("softmax1", "linear")


def _record(**model):
  base = dict(vocab_size=264, max_len=32, d_model=32, num_layers=1, num_heads=4, d_ff=64)
  cfg = OPTConfig.from_preset("tiny", **{**base, **model})
  c = ml_collections.ConfigDict({"family": "opt", "variant": "softmax1", "model": {},
                                 "train": {"num_steps": 4, "seed": 0},
                                 "optimizer": {"learning_rate": 1e-3, "schedule": "constant"},
                                 "mesh": {"data": -1}})
  return c, cfg


def test_resume_differences_name_each_field_and_spare_cadence():
  c, cfg = _record(normalizer="softmax1")
  old = resume.record(c, cfg)
  c2, cfg2 = _record(normalizer="softmax")
  c2.variant = "vanilla"
  c2.train.num_steps = 100  # run length: may change (under a constant schedule)
  c2.mesh.data = 2  # layout: may change
  c2.optimizer.learning_rate = 2e-3
  diffs = resume.differences(old, resume.record(c2, cfg2))
  assert diffs == [("model_config.normalizer", "softmax1", "softmax"),
                   ("optimizer.learning_rate", 1e-3, 2e-3), ("variant", "softmax1", "vanilla")]
  # A config.json written before "model_config" existed: its explicit model fields are compared.
  legacy = {k: v for k, v in old.items() if k != "model_config"}
  legacy["model"] = {"normalizer": "softmax1", "d_model": 32}
  c3, cfg3 = _record(normalizer="softmax1", d_model=64)
  assert resume.differences(legacy, resume.record(c3, cfg3)) == [("model_config.d_model", 32, 64)]


def test_num_steps_may_change_only_under_a_constant_schedule():
  """A cosine or linear decay spans train.num_steps: a resume with another length would rate
  every later step differently (checked here on the schedule itself), so it is a change."""
  from outeffhop_jax.train import optimizer as optimizer_lib

  for schedule in ("cosine", "linear", "constant"):
    c, cfg = _record()
    c.optimizer.schedule = schedule
    old = resume.record(c, cfg)
    c.train.num_steps = 100
    diffs = resume.differences(old, resume.record(c, cfg))
    opt = ml_collections.ConfigDict({"learning_rate": 1e-3, "warmup_steps": 1, "end_lr_ratio": 0.0,
                                     "schedule": schedule})
    rate_moves = (optimizer_lib.make_schedule(opt, 4)(3)
                  != optimizer_lib.make_schedule(opt, 100)(3))
    assert rate_moves == (schedule != "constant")
    assert diffs == ([("train.num_steps", 4, 100)] if rate_moves else []), schedule


def _flat(d, prefix=""):
  out = {}
  for k, v in d.items():
    out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
  return out


@pytest.mark.parametrize("name,base,changes", [
    ("horizon_opt_cpu", "study_opt_cpu",
     {"train.num_steps": 10_000, "train.log_every": 100, "train.eval_every": 1000,
      "train.checkpoint_every": 1000, "train.keep_checkpoints": 0}),
    ("sinks_opt_cpu", "opt_tiny",
     {"data.seq_len": 128, "train.global_batch_size": 32, "train.num_steps": 6000,
      "train.log_every": 100, "train.eval_every": 1000, "train.checkpoint_every": 500,
      "train.keep_checkpoints": 0, "optimizer.warmup_steps": 200}),
    ("sinks_bb_cpu", "study_opt_cpu",
     {"data.dataset": "bigram_backcopy", "model.num_layers": 2, "train.num_steps": 2000,
      "train.log_every": 100, "train.eval_every": 1000, "train.checkpoint_every": 250,
      "train.keep_checkpoints": 0}),
])
def test_derived_presets_are_their_base_with_the_stated_changes(name, base, changes):
  """The long-run presets load their base preset and change only what their docstring says."""
  for variant in ("vanilla", "gated", "outgate"):
    got = _flat(_preset(name, variant).to_dict())
    want = _flat(_preset(base, variant).to_dict())
    assert set(got) == set(want)
    assert {k: got[k] for k in got if got[k] != want[k]} == changes
