"""Outlier metrics along training: every kept checkpoint of one or more training workdirs.

    python -m outeffhop_jax.analysis horizon WORKDIR_OR_ROOT [...] --out DIR [--eval_batches 8]
        [--w8a8] [--every N]

A path holding config.json is a workdir; any other folder is a root whose sub-folders with a
config.json are taken. Per (workdir, checkpoint step): the FP headline metric (perplexity for
OPT), avg kurtosis and max inf-norm (`outliers.collect`), the sink rate (fraction of heads whose mean
attention to token 0 exceeds 0.3) and the mean first-token mass (`outliers.kinds`), and with
--w8a8 the W8A8 headline metric (one calibration subset). Workdirs of one variant are its seeds:
trace.md gives, per variant and step, mean ± 95 % t-interval over the seeds, and for each seed the
first step with a sink head. Measured points are kept in DIR/trace.json and not measured again,
so the trace of runs that are still training can be extended later.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time

import numpy as np

from outeffhop_jax.analysis import _io
from outeffhop_jax.analysis import stats

METRICS = ("fp", "avg_kurtosis", "max_inf_norm", "sink_rate", "first_token_mass", "w8a8")


@dataclasses.dataclass(frozen=True)
class HorizonOptions:
  paths: tuple[str, ...]
  out: str
  eval_batches: int = 8
  w8a8: bool = False
  calib_batches: int = 4
  every: int = 1  # measure every `every`-th kept checkpoint (the last one always)
  plots: bool = True


def find_workdirs(paths) -> list[str]:
  """Workdirs named by `paths` (a workdir, or a root of workdirs); FileNotFoundError naming a path
  that is neither."""
  out = []
  for p in paths:
    if os.path.isfile(os.path.join(p, "config.json")):
      out.append(p)
      continue
    subs = sorted(os.path.join(p, d) for d in os.listdir(p)) if os.path.isdir(p) else []
    subs = [s for s in subs if os.path.isfile(os.path.join(s, "config.json"))]
    if not subs:
      raise FileNotFoundError(f"horizon: {p!r} is neither a training workdir (config.json + "
                              f"checkpoints/<step>) nor a folder of workdirs")
    out.extend(subs)
  return out


def checkpoint_steps(workdir: str) -> list[int]:
  d = os.path.join(workdir, "checkpoints")
  return sorted(int(s) for s in os.listdir(d) if s.isdigit()) if os.path.isdir(d) else []


def _identity(workdir: str) -> tuple[str, int]:
  with open(os.path.join(workdir, "config.json")) as f:
    c = json.load(f)
  c = c.get("config", c)
  return str(c.get("variant", os.path.basename(workdir))), int(c.get("train", {}).get("seed", 0))


def measure(workdir: str, step: int, opts: HorizonOptions) -> dict:
  """The metrics of `workdir` at checkpoint `step` (module docstring)."""
  from outeffhop_jax.analysis.experiments.study import runs
  from outeffhop_jax.analysis.outliers import collect
  from outeffhop_jax.analysis.outliers import kinds as outlier_kinds
  from outeffhop_jax.analysis.quant import w8a8

  t = time.perf_counter()
  run = runs.load_run(workdir, step)
  family, task = run.config.family, run.task
  evs = runs.eval_set(run, opts.eval_batches)
  batches = [(b.inputs, b.weights) for b in evs]
  fp = runs.headline_value(runs.evaluate_model(run.model, task, evs), task.name)
  outl = collect.collect(run.model, family, batches)["summary"]
  ks = outlier_kinds.collect_kinds(run.model, family, batches)["summary"]
  point = {"step": int(run.step), "fp": fp, "avg_kurtosis": outl["avg_kurtosis"],
           "max_inf_norm": outl["max_inf_norm"], "sink_rate": outl["sink_rate"],
           "first_token_mass": ks["attn_first_token_mass"]}
  if opts.w8a8:
    q = w8a8.calibrate(w8a8.quantize_model(run.model, family, w8a8.SETTINGS["W8A8"]),
                       runs.calibration_inputs(run, 0, opts.calib_batches))
    point["w8a8"] = runs.headline_value(runs.evaluate_model(q, task, evs), task.name)
  point["seconds"] = time.perf_counter() - t
  return point


def _load(path: str) -> dict:
  if os.path.isfile(path):
    with open(path) as f:
      return json.load(f)
  return {"runs": {}}


def run_horizon(opts: HorizonOptions, log=print) -> dict:
  """Measures what is not in DIR/trace.json yet, then writes trace.json, trace.md and plots."""
  if opts.eval_batches < 1 or opts.every < 1 or opts.calib_batches < 1:
    raise ValueError(f"horizon: eval_batches, calib_batches and every must be >= 1, got "
                     f"{opts.eval_batches}, {opts.calib_batches}, {opts.every}")
  workdirs = find_workdirs(opts.paths)
  os.makedirs(opts.out, exist_ok=True)
  path = os.path.join(opts.out, "trace.json")
  trace = _load(path)
  settings = {"eval_batches": opts.eval_batches, "w8a8": opts.w8a8,
              "calib_batches": opts.calib_batches}
  if trace.get("settings", settings) != settings:
    raise ValueError(f"horizon: {path} was measured with {trace['settings']}, not {settings}; "
                     "use another --out or the same options")
  trace["settings"] = settings
  for wd in workdirs:
    variant, seed = _identity(wd)
    rec = trace["runs"].setdefault(os.path.abspath(wd), {"variant": variant, "seed": seed,
                                                         "points": []})
    done = {p["step"] for p in rec["points"]}
    steps = checkpoint_steps(wd)
    steps = [s for i, s in enumerate(steps) if i % opts.every == 0 or s == steps[-1]]
    for s in steps:
      if s in done:
        continue
      p = measure(wd, s, opts)
      rec["points"].append(p)
      rec["points"].sort(key=lambda q: q["step"])
      log(f"[{variant} seed {seed}] step {s}: fp {p['fp']:.3f}, avg kurtosis "
          f"{p['avg_kurtosis']:.2f}, max inf-norm {p['max_inf_norm']:.1f}, sink rate "
          f"{p['sink_rate']:.3f}, first-token mass {p['first_token_mass']:.3f} "
          f"({p['seconds']:.0f} s)")
      _io.write_json(path, trace)  # after each point: an interrupted trace resumes
  _io.write_json(path, trace)  # also when nothing new was measured (settings, a new workdir)
  with open(os.path.join(opts.out, "trace.md"), "w") as f:
    f.write(markdown(trace))
  if opts.plots:
    plot(trace, opts.out)
  return trace


def by_variant(trace: dict) -> dict[str, dict[int, dict[int, dict]]]:
  """{variant: {seed: {step: point}}}."""
  out: dict = {}
  for rec in trace["runs"].values():
    out.setdefault(rec["variant"], {})[rec["seed"]] = {p["step"]: p for p in rec["points"]}
  return out


def first_sink_step(points: dict[int, dict]):
  """The first measured step with sink rate > 0, or None."""
  return next((s for s in sorted(points) if points[s]["sink_rate"] > 0), None)


def _cell(values) -> str:
  if not values:
    return "–"
  return stats.format_interval(stats.t_interval(values), digits=3)


def markdown(trace: dict) -> str:
  groups = by_variant(trace)
  metrics = [m for m in METRICS if m != "w8a8" or trace["settings"].get("w8a8")]
  lines = ["# Outlier metrics along training", "",
           f"Eval batches {trace['settings']['eval_batches']}; mean ± 95 % t-interval over the "
           "seeds measured at that step (n in the last column). fp: the run's headline metric "
           "(perplexity for OPT); sink rate: heads whose mean attention to token 0 exceeds 0.3.", ""]
  for variant, seeds in groups.items():
    steps = sorted({s for pts in seeds.values() for s in pts})
    lines += [f"## {variant}", "", "| step | " + " | ".join(metrics) + " | n |",
              "|---|" + "---|" * (len(metrics) + 1)]
    for s in steps:
      pts = [pts[s] for pts in seeds.values() if s in pts]
      cells = [_cell([p[m] for p in pts if m in p and np.isfinite(p[m])]) for m in metrics]
      lines.append(f"| {s} | " + " | ".join(cells) + f" | {len(pts)} |")
    first = {k: first_sink_step(v) for k, v in sorted(seeds.items())}
    lines += ["", "First step with a sink head, per seed: " + ", ".join(
        f"seed {k}: {'none yet' if v is None else v}" for k, v in first.items()), ""]
  return "\n".join(lines) + "\n"


def plot(trace: dict, out: str) -> list[str]:
  from matplotlib.figure import Figure

  groups = by_variant(trace)
  paths = []
  for m in METRICS:
    if m == "w8a8" and not trace["settings"].get("w8a8"):
      continue
    fig = Figure(figsize=(5.5, 3.6))
    ax = fig.add_subplot()
    for variant, seeds in groups.items():
      steps = sorted({s for pts in seeds.values() for s in pts})
      ivs = [stats.t_interval([pts[s][m] for pts in seeds.values() if s in pts]) for s in steps]
      mean = np.array([iv.mean for iv in ivs])
      half = np.nan_to_num(np.array([iv.half_width for iv in ivs]))
      ax.plot(steps, mean, marker="o", ms=3, label=variant)
      ax.fill_between(steps, mean - half, mean + half, alpha=0.2)
    ax.set_xlabel("step")
    ax.set_ylabel(m)
    ax.legend(fontsize=7)
    paths.append(_io.save_figure(fig, os.path.join(out, f"trace_{m}.png")))
  return paths


def parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog="python -m outeffhop_jax.analysis horizon",
                              description=__doc__.split("\n\n")[0])
  p.add_argument("paths", nargs="+", help="training workdirs, or folders of workdirs")
  p.add_argument("--out", required=True, help="trace.json, trace.md, trace_<metric>.png")
  p.add_argument("--eval_batches", type=int, default=8)
  p.add_argument("--w8a8", action="store_true", help="also the W8A8 metric at each checkpoint")
  p.add_argument("--calib_batches", type=int, default=4)
  p.add_argument("--every", type=int, default=1, help="every N-th kept checkpoint (and the last)")
  p.add_argument("--no_plots", action="store_true")
  return p


def main(argv, log=print) -> int:
  a = parser().parse_args(argv)
  opts = HorizonOptions(paths=tuple(a.paths), out=a.out, eval_batches=a.eval_batches, w8a8=a.w8a8,
                        calib_batches=a.calib_batches, every=a.every, plots=not a.no_plots)
  try:
    run_horizon(opts, log=log)
  except (ValueError, FileNotFoundError) as e:
    raise SystemExit(str(e)) from e
  return 0
