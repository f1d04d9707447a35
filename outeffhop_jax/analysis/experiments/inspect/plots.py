"""Figures of the pretrained-encoder study (matplotlib Agg through `Figure`: no pyplot state).

per_layer_kurtosis.png   kurtosis and inf-norm per layer, one line per module kind
dim_max.png              the largest |x| per hidden dimension (FFN outputs; all modules), dominant
                         dimension annotated
outlier_values.png       histogram of the dominant dimension's values vs a typical dimension
ablation.png             embedding fidelity with one activation group quantized at a time

`write_checkpoint_report` draws the `inspect` command's figures: report_per_layer.png,
report_dim_max.png (as the training study's), report_fidelity.png (fidelity per setting, error
bars = std over calibration subsets), report_ablation.png and report_attention.png (first and last
attention layer).
"""
from __future__ import annotations

import os

import numpy as np
from matplotlib.figure import Figure

from outeffhop_jax.analysis._io import save_figure


def per_layer(outl: dict) -> Figure:
  fig = Figure(figsize=(10, 3.6))
  ax_k, ax_i = fig.subplots(1, 2)
  for kind, v in outl["by_kind"].items():
    ax_k.plot(v["layer"], v["kurtosis"], marker="o", label=kind)
    ax_i.plot(v["layer"], v["inf_norm"], marker="o", label=kind)
  ax_k.axhline(3.0, color="grey", lw=0.8, ls="--")
  ax_k.set(xlabel="layer", ylabel="kurtosis (mean over sequences)", yscale="log")
  ax_i.set(xlabel="layer", ylabel="inf-norm (mean over sequences)", yscale="log")
  ax_k.legend(fontsize=8)
  return fig


def dim_max(outl: dict) -> Figure:
  dom = outl["dominant"]
  rows = [("ffn_output", outl["by_kind"]["ffn_output"]["dim_max"])] if "ffn_output" in outl[
      "by_kind"] else []
  rows.append(("all measured modules", outl["dim_max"]))
  fig = Figure(figsize=(10, 2.2 * len(rows) + 0.4))
  axes = np.atleast_1d(fig.subplots(len(rows), 1, sharex=True))
  for ax, (label, d) in zip(axes, rows):
    d = np.asarray(d)
    ax.bar(np.arange(len(d)), d, width=1.0)
    ax.set_yscale("log")
    ax.annotate(f"dim {dom['dim']}: {d[dom['dim']]:.0f}", (dom["dim"], d[dom["dim"]]), fontsize=8,
                xytext=(8, -4), textcoords="offset points", color="C3")
    ax.axhline(np.median(d), color="grey", lw=0.8, ls="--")
    ax.set_ylabel(f"max |x|\n{label}", fontsize=8)
  axes[-1].set_xlabel("hidden dimension")
  return fig


def values(outl: dict) -> Figure:
  v = outl["values"]
  edges = np.asarray(v["edges_log10"])
  fig = Figure(figsize=(7, 3.6))
  ax = fig.subplots()
  for key, label in (("counts_dim", f"dim {v['dim']} (dominant)"),
                     ("counts_typical", f"dim {v['typical_dim']} (typical)")):
    c = np.asarray(v[key], np.float64)
    ax.step(edges[:-1], np.maximum(c / c.sum(), 1e-7), where="post", label=label)
  ax.set(xlabel=f"log10 |x| of {v['module']} (real tokens)", ylabel="fraction of tokens",
         yscale="log", ylim=(1e-5, 1.5))
  ax.legend(fontsize=8)
  return fig


def ablation(abl: dict) -> Figure:
  rows = abl["rows"]
  names = ["none"] + sorted((g for g in rows if g not in ("none", "all")),
                            key=lambda g: -rows[g]["fidelity"]) + ["all"]
  fig = Figure(figsize=(7, 0.32 * len(names) + 1.0))
  ax = fig.subplots()
  f = [rows[n]["fidelity"] for n in names]
  ax.barh(np.arange(len(names)), f, color=["grey"] + ["C0"] * (len(names) - 2) + ["C3"])
  ax.set_yticks(np.arange(len(names)), names, fontsize=8)
  ax.invert_yaxis()
  wb = abl.get("weight_bits")
  ax.set(xlabel=f"fidelity (cosine to FP32): W{wb or 32} weights + one activation group",
         xlim=(min(f) - 0.02, 1.0))
  return fig


def write_all(results: dict, out: str) -> list[str]:
  """Writes the figures under `out`; returns their paths."""
  outl = results["outliers"]
  paths = [save_figure(per_layer(outl), os.path.join(out, "per_layer_kurtosis.png")),
           save_figure(dim_max(outl), os.path.join(out, "dim_max.png")),
           save_figure(values(outl), os.path.join(out, "outlier_values.png"))]
  if results.get("ablation"):
    paths.append(save_figure(ablation(results["ablation"]), os.path.join(out, "ablation.png")))
  return paths


def fidelity_settings(report: dict) -> Figure:
  q = report["quantized"]
  names = list(q)
  fig = Figure(figsize=(1.4 * len(names) + 2.5, 3.2))
  ax = fig.subplots()
  ax.bar(np.arange(len(names)), [q[n]["mean"] for n in names],
         yerr=[q[n]["std"] for n in names], capsize=4)
  ax.set_xticks(np.arange(len(names)), names)
  lo = min(q[n]["mean"] - q[n]["std"] for n in names) if names else 0.0
  ax.set(ylabel=f"fidelity (cosine of the {report['output']} to FP32)",
         ylim=(max(min(lo - 0.02, 0.98), -1.0), 1.0))
  return fig


def write_checkpoint_report(report: dict, maps: dict, out: str) -> list[str]:
  """The `inspect` figures under `out`; returns their paths."""
  from outeffhop_jax.analysis.experiments.study import plots as study_plots

  name = os.path.basename(report["path"].rstrip(os.sep)) or "checkpoint"
  one = {name: {"outliers": report["outliers"]}}
  paths = [save_figure(study_plots.per_layer(one), os.path.join(out, "report_per_layer.png")),
           save_figure(study_plots.dim_max(one), os.path.join(out, "report_dim_max.png"))]
  if report["quantized"]:
    paths.append(save_figure(fidelity_settings(report), os.path.join(out, "report_fidelity.png")))
  if report.get("ablation"):
    paths.append(save_figure(ablation(report["ablation"]),
                             os.path.join(out, "report_ablation.png")))
  if maps:
    paths.append(save_figure(study_plots.attention(maps, name),
                             os.path.join(out, "report_attention.png")))
  return paths
