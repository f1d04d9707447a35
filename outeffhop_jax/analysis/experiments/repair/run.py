"""Outlier repair of a pretrained encoder: a short distillation fine-tune on a CPU.

    python -m outeffhop_jax.analysis repair --out /tmp/repair        # default: ~26 min, 2-core CPU

The teacher is the imported checkpoint (all-MiniLM-L6-v2: FP32, softmax attention, frozen). The
student is a copy whose attention may be changed (`attention_overrides(variant)`), trained in all
its parameters on `doc_passages("train")` with distillation + an outlier penalty (`loss`).
Parameters the checkpoint lacks start as the model config initialises them: a gate opens at
gate_init (0.25: every head's output scaled by it, so the output moves at step 0), learned sinks
start at 0 (= softmax1), clipped softmax starts at its gamma.

Arms per attention variant V (the ablation): "penalty" (vanilla attention + penalty: one
run whatever V), "swap" (V, no penalty), "both" (V + penalty). Each run logs a curve every
`eval_every` steps on a fixed subset of the eval passages (distillation loss, penalty, FP32
fidelity, avg kurtosis, max inf-norm, dominant-dim max |x|); `quant.fidelity.evaluate` (FP32
fidelity, retrieval, outliers, W8A8 mean ± std) runs on the original, on each variant's step-0
model (how far the attention change alone moves it) and at the end of each run.

Time: `time_budget_s` bounds the whole command. Before each run, what is left after the
evaluations still to come (timed on the original, not guessed) is shared among the remaining runs;
after its first steps a run shortens its planned steps (and so its schedule) to its share, and a
run past its share stops. Each run records steps requested, planned and run.
`report` writes results.json, results.md and the curve PNGs.

Over 400 lines because it still holds its own fine-tune loop, time-budget scheduling and CLI
options side by side; the next cut moves the scheduling and options out and runs the steps on the
training system's loop (`outeffhop_jax.train`) instead of a second one.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from outeffhop_jax.analysis.experiments.repair.loss import (DEFAULT_TAU, PENALTIES, PENALTY_MODULES,
                                                TrainOptions, learning_rate, loss_terms,
                                                jit_teacher_targets, make_train_step)

ARMS = ("penalty", "swap", "both")


# ---------------------------------------------------------------- attention variants


def attention_overrides(variant: str, seq_len: int = 128) -> dict:
  """BERT config overrides of an attention variant: "vanilla" = none, any name that
  `train.config_lib.variant_overrides` accepts, and "sink" (learned per-head sinks, init 0) where
  config_lib has none. Raises ValueError on an unknown name."""
  from outeffhop_jax.train import config_lib  # lazily: train is a heavier import

  if variant == "vanilla":
    return {}
  try:
    return dict(config_lib.variant_overrides("bert", variant, seq_len))
  except ValueError:
    if variant == "sink":
      return {"normalizer": "softmax", "sinks": "learned"}
    raise ValueError(f"repair: unknown attention variant {variant!r}; known: vanilla, sink, "
                     f"{', '.join(v for v in config_lib.VARIANTS if v != 'vanilla')}") from None


# ---------------------------------------------------------------- runs and presets


@dataclasses.dataclass(frozen=True)
class Run:
  """One fine-tune: `variant`'s attention, with the penalty on (arm "penalty" / "both") or off."""
  variant: str
  arm: str

  @property
  def name(self) -> str:
    return "penalty" if self.arm == "penalty" else f"{self.variant}:{self.arm}"

  @property
  def label(self) -> str:
    if self.arm == "penalty":
      return "vanilla + penalty"
    return f"{self.variant} (swap only)" if self.arm == "swap" else f"{self.variant} + penalty"

  @property
  def uses_penalty(self) -> bool:
    return self.arm != "swap"


def plan_runs(variants, arms) -> list[Run]:
  """The ablation variants x arms: "penalty" once (vanilla attention + penalty, whatever the
  variant), "swap" and "both" per variant; "vanilla:swap" is the pure-distillation control and
  "vanilla:both" is the "penalty" run."""
  runs = []
  for arm in arms:
    for v in variants:
      r = Run("vanilla", "penalty") if arm == "penalty" or (v == "vanilla" and arm == "both") \
          else Run(v, arm)
      if r not in runs:
        runs.append(r)
  return runs


def parse_runs(spec: str) -> list[Run]:
  """"penalty,softmax1:swap,gated:both" -> runs (names as `Run.name`)."""
  runs = []
  for item in (s.strip() for s in spec.split(",")):
    if not item:
      continue
    variant, _, arm = item.rpartition(":") if ":" in item else ("vanilla", "", item)
    if arm not in ARMS:
      raise ValueError(f"repair: run {item!r}: unknown arm {arm!r}; choose from {ARMS} "
                       "(write a run as 'penalty' or 'VARIANT:swap' / 'VARIANT:both')")
    r = Run("vanilla", "penalty") if arm == "penalty" else Run(variant, arm)
    if r not in runs:
      runs.append(r)
  return runs


def all_variants() -> tuple[str, ...]:
  """Every attention variant of `train.config_lib` (but vanilla), plus "sink"."""
  from outeffhop_jax.train import config_lib

  vs = tuple(v for v in config_lib.VARIANTS if v != "vanilla")
  return vs + (() if "sink" in vs else ("sink",))


# name -> (runs spec or None = all variants x arms, steps, batch, seq_len, lr, budget s, eval_every).
# "default": 4 runs within a 26 min budget (the command < 30 min) on a 2-core CPU; there a step of
# 16 x 128 takes ~1.2-1.5 s on a quiet machine (teacher outputs cached), up to ~3 s when shared, an
# evaluation 20-50 s, so 200 steps fit when quiet and the budget shortens runs when not (measured:
# 20.6 min, all 4 runs 200/200 steps, on the 2-core CPU shared with other jobs, load ~2).
# "full": every variant x arm (23 runs with today's config_lib), 300 steps: ~7-8 min per run on a
# quiet 2-core CPU, ~3 h in all (no budget). "gpu": the same runs, 2000 steps of 64 x 128: an
# estimate (not measured here) of ~2-3 min per run on one H100-class GPU, ~1 h in all.
PRESETS = {
    "default": dict(runs="penalty,softmax1:swap,softmax1:both,gated:both", steps=200,
                    batch_size=16, seq_len=128, lr=3e-4, time_budget_s=1560.0, eval_every=25),
    "full": dict(runs=None, steps=300, batch_size=16, seq_len=128, lr=3e-4, time_budget_s=0.0,
                 eval_every=25),
    "gpu": dict(runs=None, steps=2000, batch_size=64, seq_len=128, lr=2e-4, time_budget_s=0.0,
                eval_every=100),
}


@dataclasses.dataclass(frozen=True)
class RepairOptions:
  """Everything `run_repair` needs. time_budget_s: wall-clock limit of the whole command (0 = none);
  runs share what is left after the evaluations still to come (measured, not guessed)."""
  out: str
  runs: tuple[Run, ...]
  train: TrainOptions = TrainOptions()
  steps: int = 200
  time_budget_s: float = 1560.0
  eval_every: int = 25
  checkpoint: str = "all-MiniLM-L6-v2"
  n_passages: int | None = 128
  max_len: int = 128             # evaluation sequences (quant.fidelity)
  n_pairs: int = 150
  calib_subsets: int = 3
  calib_batches: int = 16
  calib_batch_size: int = 8
  start_calib_subsets: int = 1   # W8A8 at step 0 of a changed attention (the original: all)
  curve_batches: int = 2         # eval-passage batches (of 32) of each curve point
  seed: int = 0
  cache_mb: float = 2048.0       # teacher outputs of training batches kept for the next runs
  plots: bool = True
  preset: str = "default"


def validate(opts: RepairOptions, hf_config: dict | None = None):
  """Raises ValueError on anything that would fail later (before any compute)."""
  from outeffhop_jax.models import hf

  opts.train.validate()
  if not opts.runs:
    raise ValueError("repair: no run to do")
  if opts.steps < 0 or opts.eval_every < 1 or opts.time_budget_s < 0:
    raise ValueError("repair: steps >= 0, eval_every >= 1 and time_budget_s >= 0 are required")
  if not 1 <= opts.start_calib_subsets <= opts.calib_subsets or opts.curve_batches < 1:
    raise ValueError("repair: need 1 <= start_calib_subsets <= calib_subsets, curve_batches >= 1")
  for r in opts.runs:
    over = attention_overrides(r.variant, opts.train.seq_len)
    if hf_config is not None:  # builds the config: checks the combination with the checkpoint
      try:
        hf.config_from_hf(hf_config, **{"normalizer": "softmax", **over})
      except (TypeError, ValueError) as e:
        raise ValueError(f"repair: variant {r.variant!r} ({over}) on this checkpoint: {e}") from e


# ---------------------------------------------------------------- the study


def _load_hf_config(path: str) -> dict:
  with open(os.path.join(path, "config.json")) as f:
    return json.load(f)


def train_batches(tokenizer, opts: RepairOptions, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
  """n batches [batch_size, seq_len] of training passages (shuffled by seed, cycling), every row
  padded to seq_len so that one compiled step serves the whole run; the same for every run."""
  from outeffhop_jax.data import embedded

  texts = embedded.doc_passages("train")
  B, T = opts.train.batch_size, opts.train.seq_len
  rng = np.random.default_rng(opts.seed)
  order = np.concatenate([rng.permutation(len(texts)) for _ in range(-(-n * B // len(texts)) + 1)])
  out = []
  for k in range(n):
    ids, mask = tokenizer.encode_batch([texts[i] for i in order[k * B:(k + 1) * B]], max_len=T)
    full_ids = np.full((B, T), tokenizer.pad_id, np.int32)
    full_mask = np.zeros((B, T), np.int32)
    full_ids[:, :ids.shape[1]], full_mask[:, :ids.shape[1]] = ids, mask
    out.append((full_ids, full_mask))
  return out


def _eval_terms(model, targets, ids_BT, mask_BT, opts):
  return loss_terms(model, targets, ids_BT, mask_BT, opts)


_jit_eval_terms = nnx.jit(_eval_terms, static_argnums=(4,))


def compact(ev: dict) -> dict:
  """An `quant.fidelity.evaluate` result without its bulky parts (histograms, value samples)."""
  out = {k: v for k, v in ev.items() if k != "outliers"}
  if "outliers" in ev:
    o = ev["outliers"]
    out["outliers"] = {k: o[k] for k in ("summary", "summary_all", "dominant", "top_dims",
                                         "per_layer", "dim_max", "sink_rate") if k in o}
    out["outliers"]["by_kind"] = {k: {f: v[f] for f in ("layer", "kurtosis", "inf_norm")}
                                  for k, v in o.get("by_kind", {}).items()}
  return out


class _Context:
  """What every run shares: teacher, tokenizer, evaluation data and FP32 references, timings."""

  def __init__(self, opts: RepairOptions, log):
    from outeffhop_jax.analysis.quant import fidelity
    from outeffhop_jax.models import hf, packaged

    self.fidelity, self.opts, self.log = fidelity, opts, log
    self.path = packaged.checkpoint(opts.checkpoint)
    self.tok = packaged.tokenizer(self.path)
    self.teacher = hf.from_pretrained(self.path)
    self.data = fidelity.eval_data(self.tok, n_pairs=opts.n_pairs, n_passages=opts.n_passages,
                                   max_len=opts.max_len,
                                   calib_batches=opts.calib_batches,
                                   calib_batch_size=opts.calib_batch_size,
                                   calib_subsets=opts.calib_subsets, seed=opts.seed)
    self.reference = fidelity.teacher_outputs(self.teacher, self.data)
    n = len(self.data.passages)
    pick = sorted(set(np.linspace(0, n - 1, min(opts.curve_batches, n)).round().astype(int)))
    self.curve = [self.data.passages[i] for i in pick]
    self.curve_ref = self.fidelity.embed(self.teacher, self.curve)
    self.curve_targets = {}
    self.batches = train_batches(self.tok, opts, max(opts.steps, 1))
    self.t_eval = {}     # measured seconds: "full", "start", "curve"
    self.cache, self.cache_mb = {}, 0.0

  def targets(self, train: TrainOptions):
    """Teacher targets of the curve batches."""
    key = train.hidden_weight > 0
    if key not in self.curve_targets:
      self.curve_targets[key] = [jit_teacher_targets(self.teacher, jnp.asarray(i), jnp.asarray(m),
                                                     key) for i, m in self.curve]
    return self.curve_targets[key]

  def train_targets(self, k: int, train: TrainOptions):
    """Teacher targets of training batch k, kept for the next runs while within cache_mb."""
    hidden = train.hidden_weight > 0
    if (k, hidden) in self.cache:
      return self.cache[(k, hidden)]
    ids, mask = self.batches[k]
    t = jit_teacher_targets(self.teacher, jnp.asarray(ids), jnp.asarray(mask), hidden)
    mb = sum(x.nbytes for x in jax.tree.leaves(t)) / 2**20
    if self.cache_mb + mb <= self.opts.cache_mb:
      self.cache[(k, hidden)] = t
      self.cache_mb += mb
    return t

  def evaluate(self, model, subsets: int, what: str) -> dict:
    t = time.perf_counter()
    ev = self.fidelity.evaluate(model, self.data, teacher=self.reference, calib_subsets=subsets,
                                settings=("W8A8",), log=lambda m: self.log(f"  [{what}] {m}"))
    self.t_eval["full" if subsets == self.opts.calib_subsets else "start"] = (
        time.perf_counter() - t)
    return compact(ev)


def curve_point(ctx: _Context, model, step: int, lr: float, dim0: int) -> dict:
  """Distillation loss, outliers and FP32 fidelity of `model` on the fixed curve batches."""
  t = time.perf_counter()
  train = ctx.opts.train
  terms = [_jit_eval_terms(model, tg, jnp.asarray(i), jnp.asarray(m), train)
           for tg, (i, m) in zip(ctx.targets(train), ctx.curve)]
  mean = {k: float(np.mean([float(x[k]) for x in terms])) for k in terms[0]}
  o = ctx.fidelity.outliers(model, ctx.curve, value_batches=1)
  s = o["summary"]
  point = {"step": step, "lr": lr, "distill": mean["mse"] + mean["cos"], "mse": mean["mse"],
           "cos": mean["cos"], "penalty": mean["penalty"],
           "fidelity": ctx.fidelity.fidelity(ctx.fidelity.embed(model, ctx.curve), ctx.curve_ref),
           "avg_kurtosis": s["avg_kurtosis"], "max_inf_norm": s["max_inf_norm"],
           "dominant_dim": o["dominant"]["dim"], "dominant_max_abs": o["dominant"]["max_abs"],
           "dim0_max_abs": float(o["dim_max"][dim0])}
  # The least time measured: the first call of a new model graph includes its compilation.
  ctx.t_eval["curve"] = min(time.perf_counter() - t, ctx.t_eval.get("curve", np.inf))
  return point


def _fit_steps(budget: float, t_step: float, t_curve: float, every: int) -> int:
  """Most steps n with n t_step + (n / every) t_curve <= budget."""
  per = t_step + t_curve / every
  return int(max(budget, 0.0) // max(per, 1e-6))


def train_run(ctx: _Context, run: Run, student, share_s: float, dim0: int) -> dict:
  """Fine-tunes `student` in place for up to opts.steps steps within `share_s` seconds."""
  opts = ctx.opts
  train = opts.train if run.uses_penalty else dataclasses.replace(opts.train, penalty="none")
  t0 = time.perf_counter()
  params, opt_state, step_fn = make_train_step(student, train)
  planned, curve, last = opts.steps, [], {}
  curve.append({**curve_point(ctx, student, 0, 0.0, dim0), "loss": None})
  ctx.log(_curve_line(run, curve[-1], planned))
  reason, durations, s = "steps", [], 0
  while s < planned:
    if share_s and time.perf_counter() - t0 > share_s:
      reason = "time budget"
      break
    b = s % len(ctx.batches)
    ids, mask = ctx.batches[b]
    lr = learning_rate(s, planned, train)
    t = time.perf_counter()
    targets = ctx.train_targets(b, train)
    params, opt_state, terms = step_fn(params, opt_state, targets, ids, mask, lr)
    last = {k: float(v) for k, v in terms.items()}
    durations.append(time.perf_counter() - t)
    s += 1
    if not np.isfinite(last["loss"]):
      reason = "non-finite loss"
      break
    if s == 3 and share_s:  # compile done, two timed steps: shrink the plan to the time share
      t_step = float(np.mean(durations[1:]))
      left = share_s - (time.perf_counter() - t0)
      fit = s + _fit_steps(left, t_step, ctx.t_eval.get("curve", 0.0), opts.eval_every)
      if fit < planned:
        ctx.log(f"[{run.name}] {t_step:.2f} s/step: {fit} of {planned} steps fit its "
                f"{share_s:.0f} s share; the schedule is set for {fit}")
        planned = max(fit, s)
    if s % opts.eval_every == 0 or s == planned:
      nnx.update(student, params)
      curve.append({**curve_point(ctx, student, s, lr, dim0), "loss": last["loss"],
                    "train_penalty": last["penalty"], "grad_norm": last["grad_norm"]})
      ctx.log(_curve_line(run, curve[-1], planned))
  nnx.update(student, params)
  if curve[-1]["step"] != s:
    curve.append({**curve_point(ctx, student, s, 0.0, dim0), "loss": last.get("loss")})
  return {"train": dataclasses.asdict(train) | {"tau": train.tau_value},
          "steps_requested": opts.steps, "steps_planned": planned, "steps_run": s,
          "stop_reason": "steps" if s >= opts.steps else (
              "time budget" if reason == "steps" else reason),
          "seconds_per_step": float(np.mean(durations[1:])) if len(durations) > 1 else None,
          "train_seconds": time.perf_counter() - t0, "curve": curve}


def _curve_line(run: Run, p: dict, planned: int) -> str:
  return (f"[{run.name}] step {p['step']}/{planned}: distill {p['distill']:.4f}, penalty "
          f"{p['penalty']:.4f}, fidelity {p['fidelity']:.4f}, avg kurtosis {p['avg_kurtosis']:.1f}, "
          f"max inf-norm {p['max_inf_norm']:.1f}, dim {p['dominant_dim']} max |x| "
          f"{p['dominant_max_abs']:.1f}")


def run_repair(opts: RepairOptions, log: Callable[[str], None] = print) -> dict:
  """Runs every fine-tune of `opts.runs`; writes OUT/results.json, results.md and the curves."""
  from outeffhop_jax.analysis.experiments.repair import report as repair_report
  from outeffhop_jax.models import hf

  t_start = time.perf_counter()
  deadline = t_start + opts.time_budget_s if opts.time_budget_s else None
  os.makedirs(opts.out, exist_ok=True)
  ctx = _Context(opts, log)
  hf_config = _load_hf_config(ctx.path)
  validate(opts, hf_config)
  log(f"[repair] {opts.checkpoint}: {len(ctx.data.passage_texts)} eval passages, "
      f"{len(ctx.data.query_texts)} pairs; runs: {', '.join(r.name for r in opts.runs)}; "
      f"{opts.steps} steps of {opts.train.batch_size} x {opts.train.seq_len}"
      + (f"; budget {opts.time_budget_s:.0f} s" if deadline else ""))
  original = ctx.evaluate(ctx.teacher, opts.calib_subsets, "original")
  dim0 = original["outliers"]["dominant"]["dim"]
  for _ in range(2):  # compiles the curve measurements, then times them
    curve_point(ctx, ctx.teacher, 0, 0.0, dim0)
  starts = {"vanilla": original}
  results = {"options": _options_json(opts), "checkpoint": ctx.path, "original": original,
             "dominant_dim": dim0, "step0": {}, "runs": {}}
  for k, run in enumerate(opts.runs):
    t_run = time.perf_counter()
    over = attention_overrides(run.variant, opts.train.seq_len)
    student = hf.from_pretrained(ctx.path, seed=opts.seed, **over)
    start_key = run.variant if over else "vanilla"
    if start_key not in starts:
      log(f"[{run.name}] step 0: the imported weights with {over}")
      starts[start_key] = ctx.evaluate(student, opts.start_calib_subsets, f"{run.variant} step 0")
    share = 0.0
    if deadline:
      later = opts.runs[k + 1:]
      new_starts = {r.variant for r in later if r.variant not in starts and
                    attention_overrides(r.variant, opts.train.seq_len)}
      # A step-0 evaluation scores FP32 + start_calib_subsets W8A8 subsets, a full one FP32 +
      # calib_subsets: until one is timed, estimate it in proportion.
      t_start_eval = ctx.t_eval.get("start", ctx.t_eval["full"] * (1 + opts.start_calib_subsets)
                                    / (1 + opts.calib_subsets))
      reserve = (len(opts.runs) - k) * ctx.t_eval["full"] + len(new_starts) * t_start_eval
      share = max((deadline - time.perf_counter() - 1.05 * reserve) / (len(opts.runs) - k), 1e-3)
      log(f"[{run.name}] training share {share:.0f} s (evaluations still to come ~{reserve:.0f} s)")
    r = train_run(ctx, run, student, share, dim0)
    log(f"[{run.name}] {r['steps_run']} steps in {r['train_seconds']:.0f} s; evaluating")
    end = ctx.evaluate(student, opts.calib_subsets, f"{run.name} end")
    results["runs"][run.name] = {"variant": run.variant, "arm": run.arm, "label": run.label,
                                 "overrides": over, **r, "start": starts[start_key], "end": end,
                                 "wall_seconds": time.perf_counter() - t_run}
    del student
  for v, ev in starts.items():
    results["step0"][v] = {"fp32": ev["fp32"], "quantized": ev["quantized"],
                           "outliers": ev["outliers"]["summary"]}
  results["targets"] = repair_report.targets(results)
  results["total_seconds"] = time.perf_counter() - t_start
  results["files"] = repair_report.write(results, opts.out, plots=opts.plots)
  log(f"[repair] wrote {opts.out}/results.json, results.md and {len(results['files']) - 2} plots "
      f"in {results['total_seconds']:.0f} s")
  return results


def _options_json(opts: RepairOptions) -> dict:
  d = dataclasses.asdict(opts)
  d["runs"] = [r.name for r in opts.runs]
  d["train"]["tau"] = opts.train.tau_value
  return d


# ---------------------------------------------------------------- command line


def parser():
  import argparse

  p = argparse.ArgumentParser(
      prog="python -m outeffhop_jax.analysis repair",
      description="Distil the packaged all-MiniLM-L6-v2 into a copy with changed attention and/or "
                  "an outlier penalty; outliers, FP32 fidelity, retrieval and W8A8 before/after.")
  p.add_argument("--out", required=True, help="output folder (results.json, results.md, *.png)")
  p.add_argument("--preset", default="default", choices=sorted(PRESETS),
                 help="default: 4 runs within ~26 min on a 2-core CPU; full: every variant x arm, "
                      "300 steps (hours on a CPU); gpu: every variant x arm, 2000 steps of 64")
  p.add_argument("--runs", default=None, help="explicit runs, e.g. penalty,softmax1:swap,gated:both")
  p.add_argument("--variants", default=None, help="attention variants (with --arms: their product)")
  p.add_argument("--arms", default=None, help=f"subset of {','.join(ARMS)}")
  p.add_argument("--steps", type=int, default=None)
  p.add_argument("--time_budget_s", type=float, default=None, help="whole command; 0 = none")
  p.add_argument("--eval_every", type=int, default=None)
  p.add_argument("--penalty", default="magnitude", help=f"one of {PENALTIES}")
  p.add_argument("--penalty_weight", type=float, default=1.0)
  p.add_argument("--tau", type=float, default=None,
                 help=f"threshold (magnitude: |x|; kurtosis: target); default {DEFAULT_TAU}")
  p.add_argument("--penalty_modules", default="ffn_output", help=f"of {','.join(PENALTY_MODULES)}")
  p.add_argument("--hidden_weight", type=float, default=1.0,
                 help="weight of the block-output distillation (0: last hidden state only)")
  p.add_argument("--lr", type=float, default=None)
  p.add_argument("--batch_size", type=int, default=None)
  p.add_argument("--seq_len", type=int, default=None)
  p.add_argument("--n_passages", type=int, default=128)
  p.add_argument("--n_pairs", type=int, default=150)
  p.add_argument("--max_len", type=int, default=128, help="evaluation sequence length")
  p.add_argument("--calib_subsets", type=int, default=3)
  p.add_argument("--calib_batches", type=int, default=16)
  p.add_argument("--start_calib_subsets", type=int, default=1)
  p.add_argument("--curve_batches", type=int, default=2)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--no_plots", action="store_true")
  return p


def options_from_args(args) -> RepairOptions:
  """RepairOptions from parsed arguments: the preset, then explicit flags. Raises ValueError."""
  pre = PRESETS[args.preset]
  pick = lambda name: pre[name] if getattr(args, name) is None else getattr(args, name)  # noqa
  split = lambda s: tuple(x.strip() for x in s.split(",") if x.strip())  # noqa
  if args.runs is not None:
    if args.variants is not None or args.arms is not None:
      raise ValueError("repair: give --runs or --variants/--arms, not both")
    runs = parse_runs(args.runs)
  elif args.variants is not None or args.arms is not None or pre["runs"] is None:
    variants = split(args.variants) if args.variants is not None else all_variants()
    arms = split(args.arms) if args.arms is not None else ARMS
    bad = [a for a in arms if a not in ARMS]
    if bad:
      raise ValueError(f"repair: unknown arm(s) {bad}; choose from {ARMS}")
    runs = plan_runs(variants, arms)
  else:
    runs = parse_runs(pre["runs"])
  train = TrainOptions(penalty=args.penalty, penalty_weight=args.penalty_weight, tau=args.tau,
                       penalty_modules=split(args.penalty_modules),
                       hidden_weight=args.hidden_weight, lr=pick("lr"),
                       batch_size=pick("batch_size"), seq_len=pick("seq_len"))
  return RepairOptions(out=args.out, runs=tuple(runs), train=train, steps=pick("steps"),
                       time_budget_s=pick("time_budget_s"), eval_every=pick("eval_every"),
                       n_passages=args.n_passages or None, n_pairs=args.n_pairs,
                       max_len=args.max_len,
                       calib_subsets=args.calib_subsets, calib_batches=args.calib_batches,
                       start_calib_subsets=args.start_calib_subsets,
                       curve_batches=args.curve_batches, seed=args.seed,
                       plots=not args.no_plots, preset=args.preset)


def main(argv=None, log=None) -> int:
  """`python -m outeffhop_jax.analysis repair ...`: checks every option, then runs."""
  from outeffhop_jax.models import packaged

  args = parser().parse_args(argv)
  try:
    opts = options_from_args(args)
    validate(opts, _load_hf_config(packaged.checkpoint(opts.checkpoint)))
  except ValueError as e:
    raise SystemExit(str(e)) from e
  run_repair(opts, log=log or (lambda m: print(m, flush=True)))
  return 0
