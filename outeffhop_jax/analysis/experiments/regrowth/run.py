"""Outlier regrowth: do the repaired MiniLM's outliers come back under continued training?

    python -m outeffhop_jax.analysis regrowth --out /tmp/regrowth        # resumable; see --help

Per attention arm V (default vanilla, softmax1, gated; any name `repair.run.attention_overrides`
accepts):
  phase 1 (once per arm, deterministic, seed 0): the repair command's run "V:both" (V attention +
    outlier penalty, distillation of the FP32 import; `repair.run.train_run`) for repair_steps;
    its parameters are saved in OUT/runs/<arm>/repaired/ (params.npz + meta.json) and reused.
  phase 2 (per seed k in 0..seeds-1): from the repaired model, `steps` steps of in-batch InfoNCE
    (`regrowth.loss`) on query / passage pairs of `doc_passages("train")` (query = a passage's
    first 12 words, passage = the rest; `data.embedded.retrieval_pairs`), pairs_per_step pairs a
    step, AdamW lr (10 % linear warmup, then constant), no penalty, no distillation. Seed k sets
    the data order (dropout is off: nothing else is random). Finished runs are written as
    OUT/runs/<arm>/seed<k>.json and skipped by a rerun; OUT/options.json holds the options that
    make runs comparable, and a rerun that changes one of them is refused.

Every eval_every steps and at step 0 (`eval_point`, on fixed eval data): avg kurtosis, max
inf-norm and the max |x| of the original model's dominant hidden dimension (`outliers.encoder`
over the eval passages, the definitions of repair's curves), FP32 fidelity (mean cosine of
sentence embeddings to the original's), W8A8 fidelity (`quant.fidelity.quantize` calibrated on
calib_batches x 8 train passages), and on the eval retrieval pairs the InfoNCE loss (all
n_pairs at once: every other eval passage a negative), recall@1 and MRR. Step 0 is the repaired
model: the same for every seed, measured once per arm and process.
`report` writes results.json, results.md and the trajectory PNGs.

Cost (measured 2026-11-29 on a 2-core CPU shared with other jobs): a phase-2 step of 32 pairs
(32 + 128 tokens) takes 7.4 s of process CPU time (11-12 s wall there), an eval point with the
defaults 21 s (~32 s wall); so the default 3 arms x 3 seeds x 600 steps need ~40,000 CPU-s, about
6 h on two free cores, plus ~20-25 min of phase 1 and evaluation. Run it in parts with
--time_budget_s, or on an accelerator.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Callable

import jax
import numpy as np

from outeffhop_jax.analysis._io import json_default
from outeffhop_jax.analysis.experiments.regrowth.loss import ContrastiveOptions, info_nce, \
    make_train_step
from outeffhop_jax.analysis.experiments.regrowth import report
from outeffhop_jax.analysis.experiments.regrowth.report import arm_dir, seed_path
from outeffhop_jax.analysis.experiments.repair import loss as repair_loss
from outeffhop_jax.analysis.experiments.repair import run as repair

DEFAULT_ARMS = ("vanilla", "softmax1", "gated")
CALIB_BATCH_SIZE = 8
EVAL_BATCH = 32  # rows per eval-passage batch (`quant.fidelity.eval_data`)


@dataclasses.dataclass(frozen=True)
class RegrowthOptions:
  """Everything `run_regrowth` needs (see the module docstring)."""
  out: str
  arms: tuple[str, ...] = DEFAULT_ARMS
  seeds: int = 3
  repair_steps: int = 120
  repair_batch_size: int = 16
  steps: int = 600
  eval_every: int = 100
  pairs_per_step: int = 32
  lr: float = 5e-5
  temperature: float = 0.05
  symmetric: bool = True
  seq_len: int = 128        # training rows (both phases); a passage is cut at seq_len tokens
  query_len: int = 32       # training queries (12 words)
  max_len: int = 128        # evaluation rows
  eval_passages: int = 64   # fixed eval subset (outliers, FP32 and W8A8 fidelity)
  n_pairs: int = 128        # eval retrieval pairs (contrastive eval loss, recall@1)
  calib_batches: int = 4    # W8A8 calibration: calib_batches x 8 train passages
  checkpoint: str = "all-MiniLM-L6-v2"
  time_budget_s: float = 0.0  # 0 = none; else no new run starts past it (rerun to continue)
  plots: bool = True

  @property
  def contrastive(self) -> ContrastiveOptions:
    train = repair_loss.TrainOptions(penalty="none", lr=self.lr, warmup_frac=0.1, end_lr_ratio=1.0,
                                     batch_size=self.pairs_per_step, seq_len=self.seq_len)
    return ContrastiveOptions(temperature=self.temperature, symmetric=self.symmetric, train=train)


# Options a finished run depends on: a rerun into the same folder must keep them.
COMPARABLE = ("checkpoint", "repair_steps", "repair_batch_size", "steps", "eval_every",
              "pairs_per_step", "lr", "temperature", "symmetric", "seq_len", "query_len",
              "max_len", "eval_passages", "n_pairs", "calib_batches")


def comparable(opts: RegrowthOptions) -> dict:
  return {k: getattr(opts, k) for k in COMPARABLE}


def validate(opts: RegrowthOptions):
  """Raises ValueError naming the option on anything that would fail later (before any compute),
  including a changed comparable option against OUT/options.json."""
  from outeffhop_jax.models import hf, packaged

  if not opts.arms:
    raise ValueError("regrowth: --arms: no arm given")
  if len(set(opts.arms)) != len(opts.arms):
    raise ValueError(f"regrowth: --arms: an arm is repeated in {opts.arms}")
  checks = [("seeds", opts.seeds >= 1, ">= 1"), ("steps", opts.steps >= 1, ">= 1"),
            ("eval_every", opts.eval_every >= 1, ">= 1"),
            ("repair_steps", opts.repair_steps >= 0, ">= 0"),
            ("repair_batch_size", opts.repair_batch_size >= 1, ">= 1"),
            ("pairs_per_step", opts.pairs_per_step >= 2, ">= 2 (in-batch negatives)"),
            ("lr", opts.lr > 0, "> 0"), ("temperature", opts.temperature > 0, "> 0"),
            ("seq_len", opts.seq_len >= 8, ">= 8"), ("query_len", opts.query_len >= 8, ">= 8"),
            ("max_len", opts.max_len >= 8, ">= 8"),
            ("eval_passages", opts.eval_passages >= 1, ">= 1"),
            ("n_pairs", opts.n_pairs >= 2, ">= 2"),
            ("calib_batches", opts.calib_batches >= 1, ">= 1"),
            ("time_budget_s", opts.time_budget_s >= 0, ">= 0 (0 = none)")]
  for name, ok, want in checks:
    if not ok:
      raise ValueError(f"regrowth: --{name} must be {want}, got {getattr(opts, name)}")
  with open(os.path.join(packaged.checkpoint(opts.checkpoint), "config.json")) as f:
    hf_config = json.load(f)
  for arm in opts.arms:
    over = repair.attention_overrides(arm, opts.seq_len)  # unknown arm: ValueError
    try:
      hf.config_from_hf(hf_config, **{"normalizer": "softmax", **over})
    except (TypeError, ValueError) as e:
      raise ValueError(f"regrowth: arm {arm!r} ({over}) on this checkpoint: {e}") from e
  path = os.path.join(opts.out, "options.json")
  if os.path.exists(path):
    with open(path) as f:
      before = json.load(f)
    now = json.loads(json.dumps(comparable(opts)))
    changed = [f"--{k} {before.get(k)!r} -> {now[k]!r}" for k in COMPARABLE
               if before.get(k) != now[k]]
    if changed:
      raise ValueError(f"regrowth: {opts.out} holds runs made with other options "
                       f"({'; '.join(changed)}); their results would not be comparable: "
                       "rerun with the same options or use a new --out")


# ---------------------------------------------------------------- repaired parameters


def save_params(model, folder: str, meta: dict):
  """The model's nnx.Param leaves as params.npz (in tree order, keyed by path) + meta.json."""
  from flax import nnx

  os.makedirs(folder, exist_ok=True)
  flat = jax.tree_util.tree_flatten_with_path(nnx.state(model, nnx.Param))[0]
  arrays = {jax.tree_util.keystr(p): np.asarray(v) for p, v in flat}
  tmp = os.path.join(folder, "params.tmp.npz")
  np.savez(tmp, **arrays)
  os.replace(tmp, os.path.join(folder, "params.npz"))
  with open(os.path.join(folder, "meta.json"), "w") as f:  # written last: marks the save complete
    json.dump(meta, f, indent=1, default=json_default)


def load_params(model, folder: str):
  """Writes params.npz into `model` (same paths and shapes required); returns meta.json."""
  from flax import nnx

  state = nnx.state(model, nnx.Param)
  flat, treedef = jax.tree_util.tree_flatten_with_path(state)
  with np.load(os.path.join(folder, "params.npz")) as z:
    keys = [jax.tree_util.keystr(p) for p, _ in flat]
    if sorted(keys) != sorted(z.files):
      raise ValueError(f"load_params: {folder} holds other parameters than the model's")
    leaves = []
    for k, (_, v) in zip(keys, flat):
      a = z[k]
      if a.shape != v.shape:
        raise ValueError(f"load_params: {k} has shape {a.shape} in {folder}, {v.shape} in the "
                         "model")
      leaves.append(a.astype(v.dtype))
  nnx.update(model, jax.tree_util.tree_unflatten(treedef, leaves))
  with open(os.path.join(folder, "meta.json")) as f:
    return json.load(f)




# ---------------------------------------------------------------- data and evaluation


class TrainPairs:
  """Query / passage pairs of the train passages, tokenized per batch to fixed shapes."""

  def __init__(self, tokenizer, opts: RegrowthOptions):
    from outeffhop_jax.data import embedded

    texts = embedded.doc_passages("train")
    self.queries, self.docs = embedded.retrieval_pairs(texts, n=len(texts), seed=0)
    self.tok, self.opts = tokenizer, opts

  def order(self, seed: int) -> np.ndarray:
    """Pair indices of seed's run: epoch after epoch, each a permutation drawn by seed."""
    need = self.opts.steps * self.opts.pairs_per_step
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.permutation(len(self.queries))
                           for _ in range(-(-need // len(self.queries)))])

  def _rows(self, texts, T):
    ids, mask = self.tok.encode_batch(texts, max_len=T)
    full_ids = np.full((len(texts), T), self.tok.pad_id, np.int32)
    full_mask = np.zeros((len(texts), T), np.int32)
    full_ids[:, :ids.shape[1]], full_mask[:, :ids.shape[1]] = ids, mask
    return full_ids, full_mask

  def batch(self, order: np.ndarray, step: int):
    """(q_ids, q_mask [P, query_len], d_ids, d_mask [P, seq_len]) int32 of step `step`."""
    P = self.opts.pairs_per_step
    idx = order[step * P:(step + 1) * P]
    return (*self._rows([self.queries[i] for i in idx], self.opts.query_len),
            *self._rows([self.docs[i] for i in idx], self.opts.seq_len))


def make_context(opts: RegrowthOptions, log) -> repair._Context:
  """repair's shared context (teacher, tokenizer, eval data and FP32 references), set up for
  phase 1 (the "both" runs of opts.arms) and for the regrowth evaluations."""
  runs = tuple(r for a in opts.arms for r in repair.plan_runs((a,), ("both",)))
  train = repair_loss.TrainOptions(batch_size=opts.repair_batch_size, seq_len=opts.seq_len)
  ropts = repair.RepairOptions(
      out=opts.out, runs=runs, train=train, steps=opts.repair_steps, time_budget_s=0.0,
      eval_every=max(opts.repair_steps, 1), checkpoint=opts.checkpoint,
      n_passages=opts.eval_passages, max_len=opts.max_len, n_pairs=opts.n_pairs, calib_subsets=1,
      calib_batches=opts.calib_batches, calib_batch_size=CALIB_BATCH_SIZE, start_calib_subsets=1,
      curve_batches=-(-opts.eval_passages // EVAL_BATCH), seed=0, plots=False)
  return repair._Context(ropts, log)


def eval_point(ctx: repair._Context, model, step: int, dim0: int,
               copts: ContrastiveOptions) -> dict:
  """The metrics of `model` on the fixed eval data (see the module docstring) + seconds taken."""
  t, c = time.perf_counter(), time.process_time()
  fid = ctx.fidelity
  o = fid.outliers(model, ctx.curve, value_batches=1)
  q = fid.quantize(model, ctx.data.calib[0], setting="W8A8")
  e_q, e_d = fid.embed(model, ctx.data.queries), fid.embed(model, ctx.data.docs)
  r = fid.retrieval(e_q, e_d)
  return {"step": step, "avg_kurtosis": float(o["summary"]["avg_kurtosis"]),
          "max_inf_norm": float(o["summary"]["max_inf_norm"]),
          "dim0_max_abs": float(o["dim_max"][dim0]), "dominant_dim": int(o["dominant"]["dim"]),
          "fidelity_fp32": fid.fidelity(fid.embed(model, ctx.curve), ctx.curve_ref),
          "fidelity_w8a8": fid.fidelity(fid.embed(q, ctx.curve), ctx.curve_ref),
          "eval_loss": float(info_nce(e_q, e_d, copts.temperature, copts.symmetric)),
          "recall@1": r["recall@1"], "mrr": r["mrr"], "seconds": time.perf_counter() - t,
          "cpu_seconds": time.process_time() - c}


# ---------------------------------------------------------------- the two phases


def repaired_model(ctx, opts: RegrowthOptions, arm: str, dim0: int, log):
  """Phase 1: the arm's repaired model, loaded from OUT/runs/<arm>/repaired or trained and saved.
  Returns (model, meta)."""
  from outeffhop_jax.models import hf

  folder = os.path.join(arm_dir(opts, arm), "repaired")
  over = repair.attention_overrides(arm, opts.seq_len)
  model = hf.from_pretrained(ctx.path, seed=0, **over)
  if os.path.exists(os.path.join(folder, "meta.json")):
    meta = load_params(model, folder)
    log(f"[{arm}] phase 1: repaired parameters loaded from {folder}")
    return model, meta
  run = repair.plan_runs((arm,), ("both",))[0]
  log(f"[{arm}] phase 1: repair run {run.name!r} for {opts.repair_steps} steps")
  r = repair.train_run(ctx, run, model, 0.0, dim0)
  meta = {"arm": arm, "repair_run": run.name, "overrides": over, "options": comparable(opts),
          **{k: r[k] for k in ("train", "steps_run", "stop_reason", "seconds_per_step",
                               "train_seconds", "curve")}}
  save_params(model, folder, meta)
  return model, meta


def run_seed(ctx, pairs: TrainPairs, model, arm: str, seed: int, step0: dict, dim0: int,
             opts: RegrowthOptions, log) -> dict:
  """Phase 2 of one (arm, seed) on `model` (trained in place); returns the run's record."""
  from flax import nnx

  copts = opts.contrastive
  t0 = time.perf_counter()
  params, opt_state, step_fn = make_train_step(model, copts)
  order = pairs.order(seed)
  traj, window, durations, evals, cpu = [dict(step0)], [], [], [], []
  stop = "steps"
  for s in range(opts.steps):
    lr = repair_loss.learning_rate(s, opts.steps, copts.train)
    batch = pairs.batch(order, s)
    t, c = time.perf_counter(), time.process_time()
    params, opt_state, terms = step_fn(params, opt_state, *batch, lr)
    terms = {k: float(v) for k, v in terms.items()}
    durations.append(time.perf_counter() - t)
    cpu.append(time.process_time() - c)  # all threads: the cost on a machine shared with others
    window.append(terms)
    if not np.isfinite(terms["loss"]):
      stop = "non-finite loss"
    if (s + 1) % opts.eval_every == 0 or s + 1 == opts.steps or stop != "steps":
      nnx.update(model, params)
      p = eval_point(ctx, model, s + 1, dim0, copts)
      evals.append(p["seconds"])
      p.update(lr=lr, train_loss=float(np.mean([w["loss"] for w in window])),
               train_accuracy=float(np.mean([w["accuracy"] for w in window])),
               grad_norm=window[-1]["grad_norm"])
      window = []
      traj.append(p)
      log(_line(arm, seed, p, opts.steps))
    if stop != "steps":
      break
  return {"arm": arm, "seed": seed, "options": comparable(opts), "steps_run": traj[-1]["step"],
          "stop_reason": stop, "trajectory": traj,
          "seconds_per_step": float(np.mean(durations[1:])) if len(durations) > 1 else durations[0],
          "first_step_seconds": durations[0],
          "cpu_seconds_per_step": float(np.mean(cpu[1:])) if len(cpu) > 1 else cpu[0],
          "seconds_per_eval": float(np.mean(evals[1:])) if len(evals) > 1 else evals[0],
          "run_seconds": time.perf_counter() - t0}


def _line(arm, seed, p, steps) -> str:
  return (f"[{arm} seed {seed}] step {p['step']}/{steps}: avg kurtosis {p['avg_kurtosis']:.1f}, "
          f"max inf-norm {p['max_inf_norm']:.1f}, dim0 max |x| {p['dim0_max_abs']:.1f}, fidelity "
          f"FP32 {p['fidelity_fp32']:.4f} / W8A8 {p['fidelity_w8a8']:.4f}, eval loss "
          f"{p['eval_loss']:.3f}, recall@1 {p['recall@1']:.3f}"
          + (f", train loss {p['train_loss']:.3f}" if "train_loss" in p else "")
          + f" ({p['seconds']:.1f} s)")


def run_regrowth(opts: RegrowthOptions, log: Callable[[str], None] = print) -> dict:
  """Both phases for every arm and seed not finished in OUT; then OUT/results.json, .md, PNGs."""
  t_start = time.perf_counter()
  validate(opts)
  os.makedirs(opts.out, exist_ok=True)
  with open(os.path.join(opts.out, "options.json"), "w") as f:
    json.dump(comparable(opts), f, indent=1)
  todo = [(a, k) for a in opts.arms for k in range(opts.seeds)
          if not os.path.exists(seed_path(opts, a, k))]
  log(f"[regrowth] {len(opts.arms) * opts.seeds - len(todo)} of {len(opts.arms) * opts.seeds} "
      f"runs finished in {opts.out}; {len(todo)} to do")
  original, dim0, budget_stop = None, None, False
  if todo:
    ctx = make_context(opts, log)
    pairs = TrainPairs(ctx.tok, opts)
    dim0 = int(ctx.fidelity.outliers(ctx.teacher, ctx.curve, value_batches=1)["dominant"]["dim"])
    original = eval_point(ctx, ctx.teacher, 0, dim0, opts.contrastive)
    log(f"[regrowth] original: dominant dim {dim0}; " + _line("original", 0, original, 0))
    with open(os.path.join(opts.out, "original.json"), "w") as f:  # for a rerun's report
      json.dump({"dim0": dim0, "point": original}, f, indent=1, default=json_default)
    last_run = 0.0
    for arm in opts.arms:
      seeds = [k for a, k in todo if a == arm]
      if not seeds:
        continue
      step0 = None
      for k in seeds:
        elapsed = time.perf_counter() - t_start
        if opts.time_budget_s and elapsed + last_run > opts.time_budget_s:
          budget_stop = True
          break
        t_run = time.perf_counter()
        model, meta = repaired_model(ctx, opts, arm, dim0, log)
        if step0 is None:
          step0 = eval_point(ctx, model, 0, dim0, opts.contrastive)
          log(_line(arm, "*", step0, opts.steps))
        r = run_seed(ctx, pairs, model, arm, k, step0, dim0, opts, log)
        r["dim0"] = dim0
        with open(seed_path(opts, arm, k), "w") as f:
          json.dump(r, f, indent=1, default=json_default)
        log(f"[{arm} seed {k}] done: {r['steps_run']} steps, {r['seconds_per_step']:.2f} s/step, "
            f"{r['seconds_per_eval']:.1f} s/eval point, {r['run_seconds']:.0f} s")
        last_run = time.perf_counter() - t_run
      if budget_stop:
        log(f"[regrowth] time budget {opts.time_budget_s:.0f} s reached: later runs left for a "
            "rerun")
        break
  results = report.collect(opts, original=original, dim0=dim0)
  results["budget_stopped"] = budget_stop
  results["total_seconds"] = time.perf_counter() - t_start
  results["files"] = report.write(results, opts.out, plots=opts.plots)
  log(f"[regrowth] wrote {opts.out}/results.json, results.md and "
      f"{len(results['files']) - 2} plots in {results['total_seconds']:.0f} s")
  return results


# ---------------------------------------------------------------- command line


def parser():
  import argparse

  d = RegrowthOptions(out="")
  p = argparse.ArgumentParser(
      prog="python -m outeffhop_jax.analysis regrowth",
      description="Repair the packaged all-MiniLM-L6-v2's outliers per attention arm, then train "
                  "it on in-batch InfoNCE without penalty or distillation and measure whether "
                  "the outliers come back (seeds, 95 %% t-intervals). Resumable.")
  p.add_argument("--out", required=True, help="output folder (runs/, results.json, results.md)")
  p.add_argument("--arms", default=",".join(d.arms),
                 help="attention variants (vanilla, sink or any train.config_lib variant)")
  p.add_argument("--seeds", type=int, default=d.seeds, help="seeds 0..K-1 per arm (data order)")
  p.add_argument("--repair_steps", type=int, default=d.repair_steps,
                 help="phase 1: steps of repair's 'both' run (penalty + distillation)")
  p.add_argument("--repair_batch_size", type=int, default=d.repair_batch_size)
  p.add_argument("--steps", type=int, default=d.steps, help="phase 2: contrastive steps")
  p.add_argument("--eval_every", type=int, default=d.eval_every)
  p.add_argument("--pairs_per_step", type=int, default=d.pairs_per_step)
  p.add_argument("--lr", type=float, default=d.lr)
  p.add_argument("--temperature", type=float, default=d.temperature)
  p.add_argument("--one_way", action="store_true",
                 help="query -> passage InfoNCE only (default: symmetric)")
  p.add_argument("--seq_len", type=int, default=d.seq_len, help="training tokens per passage")
  p.add_argument("--query_len", type=int, default=d.query_len)
  p.add_argument("--max_len", type=int, default=d.max_len, help="evaluation tokens per row")
  p.add_argument("--eval_passages", type=int, default=d.eval_passages)
  p.add_argument("--n_pairs", type=int, default=d.n_pairs, help="eval retrieval pairs")
  p.add_argument("--calib_batches", type=int, default=d.calib_batches,
                 help=f"W8A8 calibration batches of {CALIB_BATCH_SIZE} train passages")
  p.add_argument("--time_budget_s", type=float, default=0.0,
                 help="no new run starts past this many seconds (0 = none); rerun to continue")
  p.add_argument("--no_plots", action="store_true")
  return p


def options_from_args(args) -> RegrowthOptions:
  arms = tuple(a.strip() for a in args.arms.split(",") if a.strip())
  return RegrowthOptions(
      out=args.out, arms=arms, seeds=args.seeds, repair_steps=args.repair_steps,
      repair_batch_size=args.repair_batch_size, steps=args.steps, eval_every=args.eval_every,
      pairs_per_step=args.pairs_per_step, lr=args.lr, temperature=args.temperature,
      symmetric=not args.one_way, seq_len=args.seq_len, query_len=args.query_len,
      max_len=args.max_len, eval_passages=args.eval_passages, n_pairs=args.n_pairs,
      calib_batches=args.calib_batches, time_budget_s=args.time_budget_s,
      plots=not args.no_plots)


def main(argv=None, log=None) -> int:
  """`python -m outeffhop_jax.analysis regrowth ...`: checks every option, then runs."""
  args = parser().parse_args(argv)
  try:
    opts = options_from_args(args)
    validate(opts)
  except ValueError as e:
    raise SystemExit(str(e)) from e
  run_regrowth(opts, log=log or (lambda m: print(m, flush=True)))
  return 0
