"""results.json / results.md / trajectory PNGs of `regrowth`, from the finished runs in OUT/runs.

Per arm and metric, over the seeds: the mean ± 95 % Student-t interval at step 0 and at the last
eval point, and of the change (last - step 0); per arm other than the baseline (vanilla when it is
an arm, else the first arm), the paired difference by seed of that change against the baseline's
(`analysis.stats`), marked * when its interval excludes 0.
"""
from __future__ import annotations

import dataclasses
import glob
import json
import math
import os

import numpy as np
from matplotlib.figure import Figure

from outeffhop_jax.analysis import stats
from outeffhop_jax.analysis._io import save_figure, write_results

# (key in a trajectory point, label); "dim0_max_abs" is labelled with the dimension.
METRICS = (("avg_kurtosis", "Avg kurtosis"), ("max_inf_norm", "Max inf-norm"),
           ("dim0_max_abs", "Dim {dim0} max |x|"), ("fidelity_fp32", "FP32 fidelity"),
           ("fidelity_w8a8", "W8A8 fidelity"), ("eval_loss", "Contrastive eval loss"),
           ("recall@1", "Recall@1"))
DIGITS = {"avg_kurtosis": 1, "max_inf_norm": 2, "dim0_max_abs": 2, "fidelity_fp32": 4,
          "fidelity_w8a8": 4, "eval_loss": 3, "recall@1": 3}


def _iv(values) -> dict | None:
  """stats.t_interval as a dict (+ low, high, excludes_zero); None without finite values."""
  v = [x for x in values if x is not None and math.isfinite(x)]
  if not v:
    return None
  iv = stats.t_interval(v)
  return {**dataclasses.asdict(iv), "low": iv.low, "high": iv.high,
          "excludes_zero": iv.excludes_zero()}


def _paired(a, b) -> dict | None:
  if not a or not all(math.isfinite(x) for x in a + b):
    return None
  iv = stats.paired_difference(a, b)
  return {**dataclasses.asdict(iv), "low": iv.low, "high": iv.high,
          "excludes_zero": iv.excludes_zero()}


def arm_dir(opts, arm: str) -> str:
  """OUT/runs/<arm>: the arm's repaired/ parameters and seed<k>.json runs."""
  return os.path.join(opts.out, "runs", arm)


def seed_path(opts, arm: str, seed: int) -> str:
  return os.path.join(arm_dir(opts, arm), f"seed{seed}.json")


def baseline_arm(arms) -> str:
  return "vanilla" if "vanilla" in arms else arms[0]


def summarize(runs: dict) -> dict:
  """runs {arm: {seed: record}} -> {"arms": {arm: {metric: {step0, last, change, seeds}}},
  "vs_baseline": {arm: {metric: {"change_diff", "seeds"}}}, "baseline"}."""
  arms = list(runs)
  out = {"arms": {}, "vs_baseline": {}, "baseline": baseline_arm(arms) if arms else None}
  change = {}
  for arm, by_seed in runs.items():
    seeds = sorted(by_seed)
    out["arms"][arm] = {}
    change[arm] = {}
    for key, _ in METRICS:
      first = [by_seed[k]["trajectory"][0][key] for k in seeds]
      last = [by_seed[k]["trajectory"][-1][key] for k in seeds]
      change[arm][key] = {k: l - f for k, f, l in zip(seeds, first, last)}
      out["arms"][arm][key] = {"step0": _iv(first), "last": _iv(last),
                               "change": _iv(list(change[arm][key].values())), "seeds": seeds,
                               "last_step": [by_seed[k]["trajectory"][-1]["step"] for k in seeds]}
  base = out["baseline"]
  for arm in arms:
    if arm == base:
      continue
    out["vs_baseline"][arm] = {}
    for key, _ in METRICS:
      common = sorted(set(change[arm][key]) & set(change[base][key]))
      out["vs_baseline"][arm][key] = {
          "change_diff": _paired([change[arm][key][k] for k in common],
                                 [change[base][key][k] for k in common]), "seeds": common}
  return out


def collect(opts, *, original: dict | None = None, dim0: int | None = None) -> dict:
  """Every finished run of opts.arms x seeds 0..opts.seeds-1 in OUT/runs, summarised."""
  runs, meta = {}, {}
  for arm in opts.arms:
    by_seed = {}
    for k in range(opts.seeds):
      path = seed_path(opts, arm, k)
      if os.path.exists(path):
        with open(path) as f:
          by_seed[k] = json.load(f)
    if by_seed:
      runs[arm] = by_seed
    mpath = os.path.join(arm_dir(opts, arm), "repaired", "meta.json")
    if os.path.exists(mpath):
      with open(mpath) as f:
        m = json.load(f)
      meta[arm] = {k: m.get(k) for k in ("repair_run", "overrides", "steps_run", "train_seconds",
                                         "seconds_per_step", "curve")}
  saved = os.path.join(opts.out, "original.json")
  if original is None and os.path.exists(saved):  # a rerun that had nothing left to train
    with open(saved) as f:
      o = json.load(f)
    original, dim0 = o["point"], o["dim0"] if dim0 is None else dim0
  if dim0 is None:
    dim0 = next((r["dim0"] for s in runs.values() for r in s.values() if "dim0" in r), None)
  run_seconds = [r["run_seconds"] for s in runs.values() for r in s.values()]
  return {"options": {**dataclasses.asdict(opts), "arms": list(opts.arms)},
          "checkpoint": opts.checkpoint, "dim0": dim0, "original": original, "repair": meta,
          "runs": {a: {str(k): r for k, r in s.items()} for a, s in runs.items()},
          "summary": summarize(runs),
          "compute": {"phase2_run_seconds": run_seconds,
                      "phase2_total_seconds": float(np.sum(run_seconds)),
                      "phase1_train_seconds": {a: m["train_seconds"] for a, m in meta.items()}}}


def _fmt(iv: dict | None, digits: int, signed: bool = False) -> str:
  if iv is None:
    return "–"
  s = stats.format_interval(stats.Interval(iv["mean"], iv["half_width"], iv["n"]), digits, signed)
  return s + (" *" if signed and iv["excludes_zero"] else "")


def _label(key: str, dim0, table: bool = True) -> str:
  label = dict(METRICS)[key].format(dim0=dim0)
  return label.replace("|", "\\|") if table else label


def reading(results: dict) -> str:
  """One line from the numbers: which changes and differences lie outside the seed noise."""
  s, opts = results["summary"], results["options"]
  if not s["arms"]:
    return "Reading: no finished run yet."
  n = min(len(a["avg_kurtosis"]["seeds"]) for a in s["arms"].values())
  if n < 2:
    return ("Reading: fewer than 2 seeds in some arm: no intervals, so no claim about regrowth "
            "either way.")
  parts = []
  for arm, m in s["arms"].items():
    c = m["avg_kurtosis"]["change"]
    trend = "rose" if c["mean"] > 0 else "fell"
    where = "beyond the seed noise" if c["excludes_zero"] else "within the seed noise"
    parts.append(f"{arm}: avg kurtosis {trend} by {abs(c['mean']):.1f} ({where})")
  base = s["baseline"]
  beyond, inside = [], []
  for arm, m in s["vs_baseline"].items():
    for key in ("avg_kurtosis", "dim0_max_abs", "fidelity_w8a8"):
      d = m[key]["change_diff"]
      if d is None:
        continue
      (beyond if d["excludes_zero"] else inside).append(
          f"{arm} {key} {d['mean']:+.{DIGITS[key]}f}")
  line = (f"Reading ({n} seeds, {opts['steps']} contrastive steps): " + "; ".join(parts) + ". ")
  if s["vs_baseline"]:
    line += (f"Changes against {base}: "
             + (f"beyond the noise: {', '.join(beyond)}" if beyond else "none beyond the noise")
             + (f"; inside the noise: {', '.join(inside)}" if inside else "") + ".")
  return line


def markdown(results: dict) -> str:
  o, s, dim0 = results["options"], results["summary"], results["dim0"]
  direction = "symmetric (query -> passage and passage -> query)" if o["symmetric"] else \
      "query -> passage"
  L = [f"# Outlier regrowth of `{results['checkpoint']}`", "",
       f"Phase 1 (once per arm, seed 0): repair's \"both\" run (the arm's attention + outlier "
       f"penalty, distillation) for {o['repair_steps']} steps of {o['repair_batch_size']} x "
       f"{o['seq_len']} tokens. Phase 2 (per seed): {o['steps']} steps of in-batch InfoNCE, "
       f"{direction}, temperature {o['temperature']:g}, {o['pairs_per_step']} train query / "
       f"passage pairs a step (query {o['query_len']}, passage {o['seq_len']} tokens), AdamW lr "
       f"{o['lr']:g} (10 % warmup, then constant), no penalty, no distillation, dropout off; the "
       "seed sets the data order. Evaluation: outliers and FP32 / W8A8 fidelity (cosine to the "
       f"original's embeddings) on {o['eval_passages']} eval passages, W8A8 calibrated on "
       f"{o['calib_batches']} x 8 train passages; contrastive loss and recall@1 over "
       f"{o['n_pairs']} eval pairs. Dim {dim0} is the original's dominant hidden dimension. "
       "Intervals: mean ± 95 % Student-t half-width over seeds; * = the interval excludes 0.", ""]
  orig = results.get("original")
  if orig:
    L += ["Original (FP32 import): " + ", ".join(
        f"{_label(k, dim0, table=False)} {orig[k]:.{DIGITS[k]}f}" for k, _ in METRICS), ""]
  for key, _ in METRICS:
    dg = DIGITS[key]
    L += [f"## {_label(key, dim0, table=False)}", "",
          "| Arm | Seeds | Step 0 | Last step | Change (last - step 0) | Change - baseline's "
          "(paired) |", "|---|---|---|---|---|---|"]
    for arm, m in s["arms"].items():
      v = m[key]
      diff = "(baseline)" if arm == s["baseline"] else \
          _fmt(s["vs_baseline"][arm][key]["change_diff"], dg, signed=True)
      L.append(f"| {arm} | {len(v['seeds'])} | {_fmt(v['step0'], dg)} | {_fmt(v['last'], dg)} "
               f"(step {max(v['last_step'])}) | {_fmt(v['change'], dg, signed=True)} | {diff} |")
    L.append("")
  L += [reading(results), ""]
  if results.get("repair"):
    L += ["## Phase 1 (repair)", "", "| Arm | Run | Steps | Avg kurtosis start -> end | "
          "Train time |", "|---|---|---|---|---|"]
    for arm, m in results["repair"].items():
      c = m["curve"] or [{}]
      L.append(f"| {arm} | {m['repair_run']} | {m['steps_run']} | "
               f"{c[0].get('avg_kurtosis', float('nan')):.1f} -> "
               f"{c[-1].get('avg_kurtosis', float('nan')):.1f} | {m['train_seconds']:.0f} s |")
    L.append("")
  comp = results["compute"]
  L += [f"Compute: phase 2 runs {comp['phase2_total_seconds'] / 60:.1f} min in all "
        f"({len(comp['phase2_run_seconds'])} runs); this command "
        f"{results['total_seconds'] / 60:.1f} min."
        + (" Stopped by the time budget: rerun to finish." if results.get("budget_stopped")
           else "")]
  files = [f for f in results.get("files", []) if f.endswith(".png")]
  if files:
    L += ["", "Figures: " + ", ".join(f"`{f}`" for f in files)]
  return "\n".join(L) + "\n"


def trajectory_band(by_seed: dict, key: str):
  """(steps, mean, half-width) over seeds at the eval steps every seed reached."""
  trajs = [r["trajectory"] for r in by_seed.values()]
  n = min(len(t) for t in trajs)
  steps = [p["step"] for p in trajs[0][:n]]
  mean, half = [], []
  for i in range(n):
    iv = _iv([t[i][key] for t in trajs])
    mean.append(iv["mean"] if iv else np.nan)
    half.append(iv["half_width"] if iv and iv["n"] > 1 else 0.0)
  return np.array(steps), np.array(mean), np.array(half)


def plot_metric(results: dict, key: str) -> Figure:
  fig = Figure(figsize=(5.5, 3.6), layout="constrained")
  ax = fig.subplots()
  for arm, by_seed in results["runs"].items():
    x, m, h = trajectory_band(by_seed, key)
    line, = ax.plot(x, m, marker="o", ms=3, label=f"{arm} ({len(by_seed)} seeds)")
    ax.fill_between(x, m - h, m + h, color=line.get_color(), alpha=0.2, lw=0)
  ax.set(xlabel="contrastive step", ylabel=dict(METRICS)[key].format(dim0=results["dim0"]))
  if key in ("avg_kurtosis", "max_inf_norm", "dim0_max_abs"):
    ax.set_yscale("log")
  ax.legend(fontsize=7)
  ax.set_title("mean, 95 % t-band over seeds", fontsize=8)
  return fig


def write(results: dict, out: str, *, plots: bool = True) -> list[str]:
  """Writes results.json, results.md and (plots) regrowth_<metric>.png; returns the names."""
  files = ["results.json", "results.md"]
  for old in glob.glob(os.path.join(out, "regrowth_*.png")):
    os.remove(old)
  if plots and results["runs"]:
    for key, _ in METRICS:
      name = f"regrowth_{key.replace('@', '_at_')}.png"
      save_figure(plot_metric(results, key), os.path.join(out, name))
      files.append(name)
  results["files"] = files
  write_results(out, results, markdown(results))
  return files
