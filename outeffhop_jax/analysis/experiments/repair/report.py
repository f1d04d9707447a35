"""results.json / results.md / curve PNGs of `repair` (the papers' table layout, one row per run).

The repair targets for each run, against the original model (the FP32 import):
    avg kurtosis <= 0.5 x the original's;  FP32 fidelity >= 0.98;
    W8A8 fidelity "clearly higher": mean gain > 0.01 and > 3 x the larger std over calibration subsets.
"""
from __future__ import annotations

import os

from matplotlib.figure import Figure

from outeffhop_jax.analysis._io import save_figure, write_results
from outeffhop_jax.analysis._format import grouped, mean_std

KURTOSIS_RATIO, MIN_FIDELITY, MIN_W8A8_GAIN = 0.5, 0.98, 0.01


def _w8(ev):
  return ev["quantized"]["W8A8"]


def targets(results: dict) -> dict:
  """{run name: {kurtosis_ratio, fidelity, w8a8_gain, *_ok, met}} against results["original"]."""
  o = results["original"]
  k0, w0 = o["outliers"]["summary"]["avg_kurtosis"], _w8(o)["fidelity"]
  out = {}
  for name, r in results["runs"].items():
    e = r["end"]
    w = _w8(e)["fidelity"]
    gain = w["mean"] - w0["mean"]
    t = {"kurtosis_ratio": e["outliers"]["summary"]["avg_kurtosis"] / k0,
         "fidelity": e["fp32"]["fidelity"], "w8a8_gain": gain}
    t["kurtosis_ok"] = t["kurtosis_ratio"] <= KURTOSIS_RATIO
    t["fidelity_ok"] = t["fidelity"] >= MIN_FIDELITY
    t["w8a8_ok"] = gain > MIN_W8A8_GAIN and gain > 3 * max(w["std"], w0["std"])
    t["met"] = t["kurtosis_ok"] and t["fidelity_ok"] and t["w8a8_ok"]
    out[name] = t
  return out


def _row(label, ev, dim0, steps, wall):
  s, fp, w = ev["outliers"]["summary"], ev["fp32"], _w8(ev)
  dom = ev["outliers"]["dominant"]
  d0 = ev["outliers"]["dim_max"][dim0]
  other = f" (now {dom['dim']}: {grouped(dom['max_abs'], 1)})" if dom["dim"] != dim0 else ""
  return (f"| {label} | {grouped(s['avg_kurtosis'], 1)} | {grouped(s['max_inf_norm'], 1)} | "
          f"{grouped(d0, 1)}{other} | {fp['fidelity']:.4f} | {fp['recall@1']:.3f} / "
          f"{fp['mrr']:.3f} | "
          f"{mean_std(w['fidelity'])} | {mean_std(w['recall@1'], 3)} | {steps} | {wall} |")


def markdown(results: dict) -> str:
  o, opts, dim0 = results["original"], results["options"], results["dominant_dim"]
  tr = opts["train"]
  cal = o["calibration"]
  L = [f"# Outlier repair of `{opts['checkpoint']}` (preset `{opts['preset']}`)", "",
       "Distillation of the FP32 import (teacher, frozen) into a copy with changed attention "
       "and/or an outlier penalty, on `doc_passages(\"train\")` "
       f"({tr['batch_size']} x {tr['seq_len']} tokens per step, AdamW lr {tr['lr']:g}, warmup "
       f"{tr['warmup_frac']:.0%} + cosine). Loss = normalised MSE of last hidden states + "
       f"(1 - cos) of sentence embeddings" + (f" + {tr['hidden_weight']:g} x block-output MSE"
                                              if tr["hidden_weight"] else "")
       + f" + {tr['penalty_weight']:g} x {tr['penalty']} penalty (tau {tr['tau']:g}) on "
       f"{', '.join(tr['penalty_modules'])} of every layer. Evaluation (`quant.fidelity`): "
       f"{opts['n_passages'] or 'all'} eval passages (fidelity = mean cosine to the FP32 "
       f"teacher's embeddings; outliers over the BERT set of docs/metrics.md, real tokens), "
       f"{opts['n_pairs']} retrieval pairs, W8A8 mean ± std over {cal['subsets']} calibration "
       f"subsets of {cal['batches']} x {cal['batch_size']} train passages. Dim {dim0} is the "
       "original's dominant hidden dimension (its largest |x| over the modules and tokens; max "
       "inf-norm is the max over modules of the mean over sequences of max |x|, docs/metrics.md). Wall "
       "time per run includes its evaluations.", "",
       f"| Model | Avg kurtosis | Max inf-norm | Dim {dim0} max \\|x\\| | FP32 fidelity | "
       "FP32 recall@1 / MRR | W8A8 fidelity | W8A8 recall@1 | Steps run | Wall time |",
       "|---|---|---|---|---|---|---|---|---|---|",
       _row("Original (FP32 import)", o, dim0, "–", "–")]
  for name, r in results["runs"].items():
    steps = f"{r['steps_run']} / {r['steps_requested']}"
    if r["stop_reason"] != "steps":
      steps += f" ({r['stop_reason']})"
    L.append(_row(r["label"], r["end"], dim0, steps, f"{r['wall_seconds'] / 60:.1f} min"))

  L += ["", "## Step 0: how far the attention change alone moves the imported model", "",
        "Gates start open at gate_init (the output of every head scaled by it), learned sinks at "
        "0 (= softmax1), clipped softmax at its gamma: the imported weights are unchanged.", "",
        "| Variant | FP32 fidelity at step 0 | Recall@1 / MRR | Avg kurtosis | W8A8 fidelity |",
        "|---|---|---|---|---|"]
  for v, s in results["step0"].items():
    w = s["quantized"]["W8A8"]["fidelity"]
    L.append(f"| {v} | {s['fp32']['fidelity']:.5f} | {s['fp32']['recall@1']:.3f} / "
             f"{s['fp32']['mrr']:.3f} | {grouped(s['outliers']['avg_kurtosis'], 1)} | "
             f"{mean_std(w)} ({len(w['values'])} subset{'s' if len(w['values']) > 1 else ''}) |")

  L += ["", "## Targets", "",
        f"Avg kurtosis at most {KURTOSIS_RATIO:g} x the original's, FP32 fidelity at least "
        f"{MIN_FIDELITY}, W8A8 fidelity gain over the original above {MIN_W8A8_GAIN} and above "
        "3 x the larger std.", "",
        "| Run | Kurtosis / original | FP32 fidelity | W8A8 fidelity gain | All met |",
        "|---|---|---|---|---|"]
  mark = lambda ok: "✓" if ok else "✗"  # noqa: E731
  for name, t in results["targets"].items():
    L.append(f"| {results['runs'][name]['label']} | {t['kurtosis_ratio']:.3f} "
             f"{mark(t['kurtosis_ok'])} | {t['fidelity']:.4f} {mark(t['fidelity_ok'])} | "
             f"{t['w8a8_gain']:+.4f} {mark(t['w8a8_ok'])} | {mark(t['met'])} |")

  L += ["", "## Curves (fixed subset of the eval passages)", "",
        "| Run | Step | Distill loss | Penalty | Fidelity | Avg kurtosis | Max inf-norm | "
        f"Dim {dim0} max \\|x\\| |", "|---|---|---|---|---|---|---|---|"]
  for name, r in results["runs"].items():
    for p in r["curve"]:
      L.append(f"| {name} | {p['step']} | {p['distill']:.4f} | {p['penalty']:.4f} | "
               f"{p['fidelity']:.4f} | {grouped(p['avg_kurtosis'], 1)} | "
               f"{grouped(p['max_inf_norm'], 1)} | "
               f"{grouped(p['dim0_max_abs'], 1)} |")
  files = [f for f in results.get("files", []) if f.endswith(".png")]
  if files:
    L += ["", "Figures: " + ", ".join(f"`{f}`" for f in files)]
  L += ["", f"Total wall time {results['total_seconds'] / 60:.1f} min."]
  return "\n".join(L) + "\n"


def curves(runs: dict, original: dict | None = None) -> Figure:
  """Avg kurtosis, FP32 fidelity and max inf-norm vs step, one line per run."""
  fig = Figure(figsize=(13, 3.6), layout="constrained")
  axes = fig.subplots(1, 3)
  for name, r in runs.items():
    step = [p["step"] for p in r["curve"]]
    for ax, key in zip(axes, ("avg_kurtosis", "fidelity", "max_inf_norm")):
      ax.plot(step, [p[key] for p in r["curve"]], marker="o", ms=3, label=r["label"])
  axes[0].set(xlabel="step", ylabel="avg kurtosis (curve subset)", yscale="log")
  axes[1].set(xlabel="step", ylabel="FP32 fidelity to the teacher")
  axes[1].axhline(MIN_FIDELITY, color="grey", lw=0.8, ls="--")
  axes[2].set(xlabel="step", ylabel="max inf-norm", yscale="log")
  axes[1].legend(fontsize=7)
  return fig


def write(results: dict, out: str, *, plots: bool = True) -> list[str]:
  """Writes results.json, results.md and (plots) curves.png + curve_<run>.png; returns names."""
  files = ["results.json", "results.md"]
  if plots and results["runs"]:
    path = os.path.join(out, "curves.png")
    files.append(os.path.basename(save_figure(curves(results["runs"]), path)))
    for name, r in results["runs"].items():
      path = os.path.join(out, f"curve_{name.replace(':', '_')}.png")
      files.append(os.path.basename(save_figure(curves({name: r}), path)))
  results["files"] = files
  write_results(out, results, markdown(results))
  return files

