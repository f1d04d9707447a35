"""The one-command study: train (or reuse) a preset's attention variants, measure, quantize, report.

    python -m outeffhop_jax.analysis study --preset opt_tiny --out /tmp/study

Per variant: `train.py --config configs/<preset>.py:<variant> --workdir <root>/<preset>_<variant>`
(skipped when the workdir already holds the final checkpoint, resumed when it holds an earlier
one, refused when it holds a later one), then on the run's evaluation batches: the float metric, the outlier metrics (`collect`) and
the three outlier kinds of the Systematic Outliers taxonomy (`outliers.kinds`: activation, weight
and attention outliers) and the fake-quantized metric of every setting (`w8a8.SETTINGS`), each
calibrated on `calib_subsets` disjoint subsets of training batches (mean +- std). Writes
results.json, results.md and plots. Variants are any names configs/<preset>.py accepts.

Seeds (`seeds` = K > 1): every variant is trained K times; seed k = 0..K-1 sets train.seed = k and
data.shuffle_seed = k, so variants with the same k share init seed and data order (paired by
seed). Seed 0 lives in the single-seed workdir <root>/<preset>_<variant>, seed k > 0 in
<root>/<preset>_<variant>_seed<k>; a reused workdir must hold the seeds it is reused for. With
K = 1 nothing is overridden and the study is the single-seed one. results.json then keeps every
seed's result under "per_seed" (and seed 0's under "results", as with one seed) and the seed
statistics (mean and 95 % t-interval per metric, paired difference to vanilla) under "seed_stats".
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time

import numpy as np

from outeffhop_jax.analysis import _io
from outeffhop_jax.train import config_lib

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))))
# Calibration batches per subset (docs/w8a8.md: BERT 16, OPT 4).
CALIB_BATCHES = {"bert": 16, "opt": 4, "vit": 4, "stanhop": 4}


@dataclasses.dataclass(frozen=True)
class StudyOptions:
  preset: str
  out: str
  workdir_root: str | None = None           # default: <out>/runs
  variants: tuple[str, ...] = ("vanilla", "softmax1", "clipped", "clipped1", "gated", "gated1")
  steps: int | None = None                  # override config.train.num_steps
  overrides: tuple[str, ...] = ()           # "train.seed=1", passed on as --config.train.seed=1
  eval_batches: int | None = None           # default: the config's num_eval_batches
  calib_subsets: int = 3
  calib_batches: int | None = None          # default: CALIB_BATCHES[family]
  settings: tuple[str, ...] = ("W8A8", "W6A8", "W4A8", "W6A6")
  percentile: float | None = None           # activation ranges from percentiles instead of min-max
  qwix: bool = False                        # also the labelled qwix protocol ("qwix-W8A8")
  # Massive-activation criterion (tau_abs, k): |x| > max(tau_abs, k * median |x|); default Sun et
  # al.'s (100, 1000) = outlier_kinds.MASSIVE_ABS / MASSIVE_RATIO.
  massive: tuple[float, float] = (100.0, 1000.0)
  configs_dir: str = os.path.join(REPO, "configs")
  train_script: str = os.path.join(REPO, "train.py")
  plots: bool = True
  seeds: int = 1                            # K: each variant trained with seeds 0..K-1

  @property
  def root(self) -> str:
    return self.workdir_root or os.path.join(self.out, "runs")


SEED_KEYS = ("train.seed", "data.shuffle_seed")


def check_seeds(opts: StudyOptions) -> None:
  """seeds >= 1, and with several seeds no --set of the keys the seeds set."""
  if not isinstance(opts.seeds, int) or opts.seeds < 1:
    raise ValueError(f"seeds must be an integer >= 1, got {opts.seeds!r}")
  clash = [o for o in opts.overrides if o.split("=", 1)[0] in SEED_KEYS]
  if opts.seeds > 1 and clash:
    raise ValueError(f"seeds={opts.seeds} sets {' and '.join(SEED_KEYS)} per seed; drop {clash}")


def workdir_of(opts: StudyOptions, variant: str, seed: int = 0) -> str:
  """<root>/<preset>_<variant> for seed 0 (the single-seed layout), ..._seed<k> for seed k > 0."""
  name = f"{opts.preset}_{variant}" + (f"_seed{seed}" if seed else "")
  return os.path.join(opts.root, name)


def load_config(opts: StudyOptions, variant: str, seed: int | None = None):
  """configs/<preset>.py:<variant> with --steps and --set overrides applied (and, when `seed` is
  given, train.seed = data.shuffle_seed = seed)."""
  path = os.path.join(opts.configs_dir, f"{opts.preset}.py")
  if not os.path.exists(path):
    raise FileNotFoundError(f"no preset {opts.preset!r}: {path} does not exist")
  config = config_lib.config_from_file(path, variant)
  for key, value in _override_pairs(opts, seed):
    node = config
    *parents, leaf = key.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = _parse_value(value, node[leaf])
  return config


def _override_pairs(opts: StudyOptions, seed: int | None = None):
  pairs = [o.split("=", 1) for o in opts.overrides]
  if opts.steps is not None:
    pairs.append(("train.num_steps", str(opts.steps)))
  if seed is not None:
    pairs += [(k, str(seed)) for k in SEED_KEYS]
  return pairs


def _parse_value(text: str, current):
  if isinstance(current, bool):
    return text.lower() in ("1", "true", "yes")
  for cast in (int, float):
    if isinstance(current, cast):
      return cast(text)
  if isinstance(current, tuple):
    return tuple(float(x) for x in text.strip("()").split(",") if x)
  if current is None:  # a placeholder: the most specific type that parses
    for cast in (int, float):
      try:
        return cast(text)
      except ValueError:
        pass
  return text


def _latest_step(workdir: str) -> int | None:
  ckpts = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(ckpts):
    return None
  steps = [int(d) for d in os.listdir(ckpts) if d.isdigit()]
  return max(steps) if steps else None


def _check_workdir_seed(workdir: str, seed: int) -> None:
  """A reused run of seed k must have been trained with train.seed = data.shuffle_seed = k."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    return
  with open(path) as f:
    stored = json.load(f)
  got = (stored.get("train", {}).get("seed"), stored.get("data", {}).get("shuffle_seed"))
  if got != (seed, seed):
    raise ValueError(f"{workdir} was trained with train.seed={got[0]}, data.shuffle_seed="
                     f"{got[1]}, not seed {seed}; move it away or pick another --workdir_root")


def train_variant(opts: StudyOptions, variant: str, log=print, seed: int | None = None) -> str:
  """Trains `variant` (with `seed`, if given) into `workdir_of` unless its final checkpoint is
  there (resumes from an earlier one)."""
  config = load_config(opts, variant, seed)
  workdir = workdir_of(opts, variant, seed or 0)
  tag = variant if seed is None else f"{variant} seed {seed}"
  if seed is not None:
    _check_workdir_seed(workdir, seed)
  num_steps = int(config.train.num_steps)
  done = _latest_step(workdir)
  if done is not None and done > num_steps:  # reusing it would report a longer run as this one
    raise ValueError(f"{workdir} holds a run trained to step {done}, beyond the {num_steps} steps "
                     f"asked for; use the same --steps, another --workdir_root, or `horizon` to "
                     f"measure its earlier checkpoints")
  if done == num_steps:
    log(f"[{tag}] reusing {workdir} (step {done})")
    return workdir
  cmd = [sys.executable, opts.train_script,
         f"--config={os.path.join(opts.configs_dir, opts.preset)}.py:{variant}",
         f"--workdir={workdir}"]
  cmd += [f"--config.{k}={v}" for k, v in _override_pairs(opts, seed)]
  log(f"[{tag}] training {num_steps} steps: {' '.join(cmd)}")
  t = time.perf_counter()
  subprocess.run(cmd, check=True, cwd=REPO)
  log(f"[{tag}] trained in {time.perf_counter() - t:.0f} s")
  return workdir


def analyse_variant(workdir: str, opts: StudyOptions, log=print) -> tuple[dict, dict]:
  """(JSON-ready results, attention maps) of one trained run."""
  from outeffhop_jax.analysis.outliers import collect
  from outeffhop_jax.analysis.outliers import kinds as outlier_kinds
  from outeffhop_jax.analysis.experiments.study import runs
  from outeffhop_jax.analysis.quant import w8a8

  t = time.perf_counter()
  run = runs.load_run(workdir)
  family, task = run.config.family, run.task
  evs = runs.eval_set(run, opts.eval_batches)
  fp = runs.evaluate_model(run.model, task, evs)
  outl = collect.collect(run.model, family, [(b.inputs, b.weights) for b in evs])
  maps = outl.pop("maps")
  kinds = outlier_kinds.collect_kinds(run.model, family, [(b.inputs, b.weights) for b in evs],
                                      tau_abs=opts.massive[0], k=opts.massive[1])
  n_cal = opts.calib_batches or CALIB_BATCHES[family]
  cal = [runs.calibration_inputs(run, s, n_cal) for s in range(opts.calib_subsets)]
  quantized = {}
  for name in opts.settings:
    cfg = dataclasses.replace(w8a8.SETTINGS[name], percentile=opts.percentile)
    evals = [runs.evaluate_model(w8a8.calibrate(w8a8.quantize_model(run.model, family, cfg), inputs),
                                 task, evs) for inputs in cal]
    quantized[name] = {**_spread(evals, task.name), "config": dataclasses.asdict(cfg)}
  if opts.qwix:
    from outeffhop_jax.analysis.quant import qwix_w8a8

    qq = qwix_w8a8.QwixW8A8(run.model, family, cal[0][0])
    evals = [runs.evaluate_model(qq.calibrate(inputs), task, evs) for inputs in cal]
    quantized["qwix-W8A8"] = {**_spread(evals, task.name), "config": qwix_w8a8.PROTOCOL}
  key, _, _ = runs.headline_metric(task.name)
  result = {"workdir": os.path.abspath(workdir), "step": run.step, "family": family,
            "variant": run.config.variant, "normalizer": run.model_cfg.normalizer,
            "gate": run.model_cfg.gate, "fp": {**fp, key: runs.headline_value(fp, task.name)},
            "outliers": outl, "outlier_kinds": kinds, "quantized": quantized,
            "calibration": {"subsets": opts.calib_subsets, "batches": n_cal,
                            "percentile": opts.percentile},
            "eval_batches": len(evs), "analysis_seconds": time.perf_counter() - t}
  log(f"[{result['variant']}] {key} {result['fp'][key]:.3f}, avg kurtosis "
      f"{outl['summary']['avg_kurtosis']:.2f}, max inf-norm {outl['summary']['max_inf_norm']:.2f}, "
      + ", ".join(f"{n} {v['mean']:.3f}+-{v['std']:.3f}" for n, v in quantized.items())
      + f" ({result['analysis_seconds']:.0f} s)")
  ks = kinds["summary"]
  log(f"[{result['variant']}] outlier kinds: activation max/median {ks['act_max_ratio']:.1f} "
      f"(massive frac {ks['act_massive_frac']:.1e}), weight max/median "
      f"{ks['weight_max_ratio']:.1f}, LN gamma max/median {ks['ln_gamma_max_ratio']:.1f}, "
      f"sink heads {ks['attn_sink_head_frac']:.2f}, first-token mass "
      f"{ks['attn_first_token_mass']:.3f}")
  return result, maps


def _spread(evals: list[dict], task_name: str) -> dict:
  from outeffhop_jax.analysis.experiments.study import runs

  vals = [runs.headline_value(e, task_name) for e in evals]
  losses = [e["loss"] for e in evals]
  return {"values": vals, "mean": float(np.mean(vals)), "std": float(np.std(vals)),
          "loss_mean": float(np.mean(losses)), "loss_std": float(np.std(losses))}


def run_study(opts: StudyOptions, log=print) -> dict:
  """Trains/reuses every variant, analyses each, writes DIR/results.{json,md} and the plots."""
  from outeffhop_jax.analysis.experiments.study import plots
  from outeffhop_jax.analysis.experiments.study import report

  check_seeds(opts)
  os.makedirs(opts.out, exist_ok=True)
  t0 = time.perf_counter()
  results, all_maps, train_s = {}, {}, {}
  per_seed: dict[str, list[dict]] = {v: [] for v in opts.variants}
  # Seed-major order: a study stopped half-way leaves every variant's first seeds done.
  for k in range(opts.seeds):
    seed = None if opts.seeds == 1 else k
    for v in opts.variants:
      t = time.perf_counter()
      workdir = train_variant(opts, v, log, seed=seed)
      train_s[v] = train_s.get(v, 0.0) + time.perf_counter() - t
      r, maps = analyse_variant(workdir, opts, log)
      if seed is not None:
        r["seed"] = seed
      per_seed[v].append(r)
      if k == 0:
        results[v], all_maps[v] = r, maps
  settings = list(opts.settings) + (["qwix-W8A8"] if opts.qwix else [])
  study = {"preset": opts.preset, "variants": list(opts.variants), "steps": opts.steps,
           "overrides": list(opts.overrides), "settings": settings,
           "results": results, "train_seconds": train_s,
           "total_seconds": time.perf_counter() - t0}
  if opts.seeds > 1:
    from outeffhop_jax.analysis.experiments.study import seeds as seeds_lib

    study["seeds"] = list(range(opts.seeds))
    study["per_seed"] = per_seed
    study["seed_stats"] = seeds_lib.seed_stats(per_seed)
  # The reports before the plots (a failing plot leaves them), results.json again with their names.
  _io.write_results(opts.out, study, report.markdown(study))
  np.savez_compressed(os.path.join(opts.out, "attention_maps.npz"),
                      **{f"{v}/{n}": m for v, ms in all_maps.items() for n, m in ms.items()})
  if opts.plots:
    study["plots"] = plots.write_all(study, all_maps, opts.out)
  study["total_seconds"] = time.perf_counter() - t0
  _io.write_json(os.path.join(opts.out, "results.json"), study)
  log(f"wrote {opts.out}/results.json, results.md and {len(study.get('plots', []))} plots "
      f"in {study['total_seconds']:.0f} s")
  return study

