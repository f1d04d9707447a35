"""Study figures (matplotlib Agg through `Figure` objects: no pyplot global state).

per_layer.png    avg kurtosis and max inf-norm per layer, one line per variant (several seeds:
                 mean with 95 % t-interval error bars)
dim_max.png      the largest |x| per hidden dimension over the outlier modules, per variant
histograms.png   distribution of log10 |x| of each variant's max-inf-norm module
attention_<variant>.png   attention probabilities of a few heads (first evaluation example)
seeds.png        (several seeds) mean ± 95 % t-interval of the headline metrics per variant
outlier_kinds.png per layer, one line per variant: activation max/median, weight max/median and
                  the largest attention mass a key receives (the Systematic Outliers taxonomy)
"""
from __future__ import annotations

import os

import numpy as np
from matplotlib.figure import Figure

from outeffhop_jax.analysis import stats
from outeffhop_jax.analysis._io import save_figure


def _mean_err(rows) -> tuple[np.ndarray, np.ndarray | None]:
  """Mean over seeds (rows) and the 95 % t half-width (None for one seed)."""
  rows = np.asarray(rows, np.float64)
  if rows.shape[0] < 2:
    return rows[0], None
  hw = [stats.t_interval(col).half_width for col in rows.T]
  return rows.mean(axis=0), np.asarray(hw)


def per_layer(results: dict, per_seed: dict | None = None) -> Figure:
  """Per-layer avg kurtosis and max inf-norm; with `per_seed` ({variant: [result per seed]}) the
  mean over seeds with 95 % t-interval error bars."""
  fig = Figure(figsize=(10, 3.6))
  ax_k, ax_i = fig.subplots(1, 2)
  for v, r in results.items():
    runs = (per_seed or {}).get(v) or [r]
    layer = r["outliers"]["per_layer"]["layer"]
    for ax, key in ((ax_k, "kurtosis"), (ax_i, "inf_norm")):
      mean, err = _mean_err([x["outliers"]["per_layer"][key] for x in runs])
      ax.errorbar(layer, mean, yerr=err, marker="o", capsize=3,
                  label=v if len(runs) == 1 else f"{v} ({len(runs)} seeds)")
  ax_k.set(xlabel="layer", ylabel="avg kurtosis (modules of the layer)", yscale="log")
  ax_i.set(xlabel="layer", ylabel="max inf-norm", yscale="log")
  ax_k.axhline(3.0, color="grey", lw=0.8, ls="--")
  ax_i.legend(fontsize=8)
  return fig


def dim_max(results: dict) -> Figure:
  n = len(results)
  fig = Figure(figsize=(10, 1.9 * n + 0.5))
  axes = np.atleast_1d(fig.subplots(n, 1, sharex=True))
  for ax, (v, r) in zip(axes, results.items()):
    d = np.asarray(r["outliers"]["dim_max"])
    ax.bar(np.arange(len(d)), d, width=1.0)
    for t in r["outliers"]["top_dims"][:3]:
      ax.annotate(str(t["dim"]), (t["dim"], t["max_abs"]), fontsize=7, ha="center")
    ax.set_ylabel(f"{v}\nmax |x|", fontsize=8)
  axes[-1].set_xlabel("hidden dimension")
  return fig


def histograms(results: dict) -> Figure:
  fig = Figure(figsize=(7, 4))
  ax = fig.subplots()
  for v, r in results.items():
    h = r["outliers"]["hist"]
    name = r["outliers"]["summary"]["max_inf_norm_module"]
    edges = np.asarray(h["edges_log10"])
    counts = np.asarray(h["modules"][name], np.float64)
    ax.step(edges[:-1], counts / max(counts.sum(), 1.0), where="post", label=f"{v}: {name}")
  ax.set(xlabel="log10 |x|", ylabel="fraction of values", yscale="log")
  ax.legend(fontsize=7)
  return fig


def attention(maps: dict, title: str, max_heads: int = 4) -> Figure:
  names = sorted(maps, key=lambda n: [int(p) if p.isdigit() else p for p in n.split(".")])
  names = names[:1] + names[-1:] if len(names) > 1 else names  # first and last layer
  heads = min(max_heads, min(np.asarray(maps[n]).shape[0] for n in names))
  fig = Figure(figsize=(2.4 * heads, 2.4 * len(names) + 0.4))
  axes = np.asarray(fig.subplots(len(names), heads, squeeze=False))
  for i, n in enumerate(names):
    for h in range(heads):
      ax = axes[i, h]
      ax.imshow(np.asarray(maps[n])[h], cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
      ax.set_xticks([])
      ax.set_yticks([])
      ax.set_title(f"{n.split('.attn_probs')[0]} h{h}", fontsize=6)
  fig.suptitle(f"{title}: attention probabilities (query rows, key columns)", fontsize=8)
  return fig


def outlier_kinds(results: dict) -> Figure | None:
  """Per-layer profile of the three outlier kinds; None when no result has them."""
  have = {v: r["outlier_kinds"]["per_layer"] for v, r in results.items() if r.get("outlier_kinds")}
  if not have:
    return None
  fig = Figure(figsize=(13, 3.6))
  panels = (("act_max_ratio", "activation max|x| / median|x|", "log"),
            ("weight_max_ratio", "weight max|w| / median|w|", "log"),
            ("attn_max_received", "max attention mass a key receives", "linear"))
  for ax, (key, label, scale) in zip(fig.subplots(1, 3), panels):
    for v, pl in have.items():
      ax.plot(pl["layer"], pl[key], marker="o", label=v)
    ax.set(xlabel="layer", ylabel=label, yscale=scale)
  first = next(r["outlier_kinds"] for r in results.values() if r.get("outlier_kinds"))
  ax.axhline(first["thresholds"]["sink_threshold"], color="grey", lw=0.8, ls="--")
  ax.legend(fontsize=8)
  return fig


def seed_summary(study: dict) -> Figure:
  """Mean ± 95 % t-interval over seeds of the headline metrics, one bar per variant."""
  from outeffhop_jax.analysis.experiments.study.seeds import OUTLIER_METRICS

  ms = study["seed_stats"]["metrics"]
  titles = {"fp": "FP metric", **{k: t for k, t, _ in OUTLIER_METRICS}}
  keys = [k for k in ("fp", "avg_kurtosis", "max_inf_norm", "sink_heads", "W8A8 Δ")
          if all(k in m for m in ms.values())]
  variants = list(ms)
  fig = Figure(figsize=(3.2 * len(keys), 3.4))
  axes = np.atleast_1d(fig.subplots(1, len(keys)))
  for ax, k in zip(axes, keys):
    mean = [ms[v][k]["mean"] for v in variants]
    err = [ms[v][k]["half_width"] for v in variants]
    ax.bar(np.arange(len(variants)), mean, yerr=err, capsize=4, color="C0")
    for i, v in enumerate(variants):  # the seeds themselves
      vals = ms[v][k]["values"]
      ax.plot([i] * len(vals), vals, "k.", ms=4)
    ax.set_xticks(np.arange(len(variants)), variants, rotation=45, fontsize=7)
    ax.set_title(titles.get(k, "W8A8 − FP" if k == "W8A8 Δ" else k), fontsize=9)
  fig.suptitle(f"{len(study['seeds'])} seeds: mean ± 95 % t-interval (dots: seeds)", fontsize=9)
  return fig


def write_all(study: dict, maps: dict, out: str) -> list[str]:
  """Writes every figure of the study under `out`; returns the paths."""
  results = study["results"]
  paths = [save_figure(per_layer(results, study.get("per_seed")),
                       os.path.join(out, "per_layer.png")),
           save_figure(dim_max(results), os.path.join(out, "dim_max.png")),
           save_figure(histograms(results), os.path.join(out, "histograms.png"))]
  if study.get("seed_stats"):
    paths.append(save_figure(seed_summary(study), os.path.join(out, "seeds.png")))
  kinds = outlier_kinds(results)
  if kinds is not None:
    paths.append(save_figure(kinds, os.path.join(out, "outlier_kinds.png")))
  for v, m in maps.items():
    if m:
      paths.append(save_figure(attention(m, v), os.path.join(out, f"attention_{v}.png")))
  return paths
