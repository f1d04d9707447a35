"""results.md: the papers' table layout, with the published figures beside ours for paper presets.

The published figures (OutEffHop Table 1, mean of 3 seeds; Quantizable Transformers Table 2) are
read from docs/reference_results.json (described in docs/reference_results.md), keyed by our preset
and variant names.
"""
from __future__ import annotations

import json
import os

from outeffhop_jax.analysis import stats
from outeffhop_jax.analysis._format import dims, mean_std, num, sci

LABELS = {"vanilla": "Vanilla", "softmax1": "OutEffHop (softmax1)", "clipped": "Clipped",
          "clipped1": "Clipped OutEffHop", "gated": "Gated", "gated1": "Gated OutEffHop",
          "sigmoid": "Sigmoid attention", "softplus": "Softplus (LSSA)", "stablemax": "Stablemax",
          "softpick": "Softpick", "outgate": "Output gate (Qiu et al.)"}
PAIRS = (("vanilla", "softmax1"), ("clipped", "clipped1"), ("gated", "gated1"))
REFERENCE_FILE = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))))), "docs", "reference_results.json")


def reference_table(name: str, path: str = REFERENCE_FILE) -> dict[str, dict[str, tuple]]:
  """{preset: {variant: (avg kurtosis, max inf-norm, FP metric, W8A8 metric)}} of one published
  table ("outeffhop" or "quantizable"); rows without a preset of ours are left out."""
  with open(path, encoding="utf-8") as f:
    rows = json.load(f)["tables"][name]["rows"]
  out: dict[str, dict[str, tuple]] = {}
  for r in rows:
    if r["preset"] is not None:
      out.setdefault(r["preset"], {})[r["variant"]] = (r["avg_kurtosis"], r["max_inf_norm"],
                                                       r["fp"], r["w8a8"])
  return out


def _pm(q) -> str:
  return mean_std(q, 3, compact=True)


# The FP metric of each family, as (key in a result's "fp", column title).
_METRIC = {"vit": ("top1", "top-1 %"), "stanhop": ("mse", "MSE")}


def _metric(family: str):
  return _METRIC.get(family, ("perplexity", "ppl"))


def markdown(study: dict) -> str:
  preset, results = study["preset"], study["results"]
  first = next(iter(results.values()))
  metric = _metric(first["family"])[1]
  outeffhop, quantizable = reference_table("outeffhop"), reference_table("quantizable")
  paper = preset in outeffhop
  lines = [f"# Outlier study: `{preset}`", ""]
  steps = {r["step"] for r in results.values()}
  lines.append(f"Trained steps: {', '.join(map(str, sorted(steps)))}; evaluation batches: "
               f"{first['eval_batches']}; W8A8 mean ± std over {first['calibration']['subsets']} "
               f"calibration subsets of {first['calibration']['batches']} batches"
               + (f" (activation percentile {first['calibration']['percentile']})"
                  if first["calibration"]["percentile"] else " (running min-max, momentum 0.9)")
               + ". Avg kurtosis = mean over modules of the per-row kurtosis; max inf-norm = max "
               "over modules (docs/metrics.md).")
  lines.append("")
  if study.get("seed_stats"):
    lines += _seeds_section(study, metric)
    lines += [f"## Seed {study['seeds'][0]} in detail", ""]
  head = (f"| Method | FP {metric} | Max inf-norm | Avg kurtosis | W8A8 {metric} | Sink rate | "
          f">6σ fraction |")
  sep = "|---|---|---|---|---|---|---|"
  if paper:
    head += " Paper: avg kurt | max inf | FP16 | W8A8 |"
    sep += "---|---|---|---|"
  lines += [head, sep]
  for v, r in results.items():
    s = r["outliers"]["summary"]
    key = _metric(r["family"])[0]
    w8 = r["quantized"].get("W8A8")
    row = (f"| {LABELS.get(v, v)} | {num(r['fp'][key], 3)} | {num(s['max_inf_norm'])} | "
           f"{num(s['avg_kurtosis'])} | {_pm(w8) if w8 else '–'} | {num(s['sink_rate'])} | "
           f"{s['beyond_6sigma']:.1e} |")
    if paper:
      pub = outeffhop[preset].get(v)
      row += (" " + " | ".join(num(x) for x in pub) + " |") if pub else " – | – | – | – |"
    lines.append(row)
  if paper and preset in quantizable:
    lines += ["", "Quantizable Transformers (Bondarenko et al. 2023), Table 2, same preset:", "",
              f"| Method | FP {metric} | Max inf-norm | Avg kurtosis | W8A8 |", "|---|---|---|---|---|"]
    for v, (k, i, fp, w) in quantizable[preset].items():
      lines.append(f"| {LABELS[v]} | {num(fp)} | {num(i)} | {num(k)} | {num(w)} |")

  lines += ["", "## Softmax_1 pairs (change with vs without OutEffHop)", "",
            "| Pair | Δ avg kurtosis | Δ max inf-norm |", "|---|---|---|"]
  for a, b in PAIRS:
    if a in results and b in results:
      sa, sb = results[a]["outliers"]["summary"], results[b]["outliers"]["summary"]
      lines.append(f"| {LABELS[a]} → {LABELS[b]} | "
                   f"{100 * (sb['avg_kurtosis'] / sa['avg_kurtosis'] - 1):+.1f} % | "
                   f"{100 * (sb['max_inf_norm'] / sa['max_inf_norm'] - 1):+.1f} % |")

  settings = [s for s in study.get("settings", []) if s != "W8A8"]
  if settings:
    lines += ["", f"## Low-bit fake quantization ({metric}, mean ± std)", "",
              "| Method | FP | " + " | ".join(["W8A8"] + settings) + " |",
              "|---|---|" + "---|" * (len(settings) + 1)]
    for v, r in results.items():
      key = _metric(r["family"])[0]
      cells = [_pm(r["quantized"][s]) if s in r["quantized"] else "–"
               for s in ["W8A8"] + settings]
      lines.append(f"| {LABELS.get(v, v)} | {num(r['fp'][key], 3)} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Weights symmetric per tensor (W4A8: MSE-optimal clipping, others min-max); "
                 "activations asymmetric per tensor; head and gates in float.")
    if "qwix-W8A8" in settings:
      lines.append("qwix-W8A8 is a different, labelled protocol: " + first["quantized"]["qwix-W8A8"]
                   ["config"] + ".")

  lines += ["", "## Where the outliers are", "",
            "| Method | Max kurtosis (module) | Max inf-norm module | Top hidden dims (max abs, × median) |",
            "|---|---|---|---|"]
  for v, r in results.items():
    s, top = r["outliers"]["summary"], r["outliers"]["top_dims"]
    top3 = ", ".join(f"{t['dim']} ({num(t['max_abs'])}, ×{num(t['ratio_to_median'], 1)})"
                     for t in top[:3])
    lines.append(f"| {LABELS.get(v, v)} | {num(s['max_kurtosis'])} ({s['max_kurtosis_module']}) | "
                 f"{s['max_inf_norm_module']} | {top3} |")
  lines += ["", "Module set: " + ", ".join(f"`{n}`" for n in first["outliers"]["module_set"]), ""]
  lines += _kinds_section(results)
  return "\n".join(lines) + "\n"


def _iv(d: dict, digits: int = 3, signed: bool = False) -> str:
  """An interval dict of `seeds.seed_stats` as "m ± h" (and "*" when a difference excludes 0)."""
  iv = stats.Interval(d["mean"], d["half_width"], d["n"], d["confidence"])
  return stats.format_interval(iv, digits, signed) + (" *" if signed and d["excludes_zero"] else "")


def _seed_columns(study: dict, metric: str) -> list[tuple[str, str, int]]:
  from outeffhop_jax.analysis.experiments.study.seeds import OUTLIER_METRICS

  cols = [("fp", f"FP {metric}", 3)] + [(k, t, 2) for k, t, _ in OUTLIER_METRICS]
  for setting in study.get("settings", []):
    cols += [(setting, setting, 3), (f"{setting} Δ", f"{setting} − FP", 3)]
  first = next(iter(study["seed_stats"]["metrics"].values()))
  return [c for c in cols if c[0] in first]


def _seeds_section(study: dict, metric: str) -> list[str]:
  """Mean ± 95 % t-interval per metric over seeds, and the paired difference to vanilla."""
  ss = study["seed_stats"]
  cols = _seed_columns(study, metric)
  n = len(study["seeds"])
  conf = f"{100 * ss['confidence']:g} %"
  lines = [f"## {n} seeds: mean ± {conf} t-interval", "",
           f"Seeds {', '.join(map(str, study['seeds']))}: seed k trains with train.seed = "
           "data.shuffle_seed = k, so every variant of one seed has the same initialisation seed "
           f"and data order. Interval = mean ± t(0.975, {n - 1}) · s / √{n} (s: sample standard "
           "deviation over seeds). Quantized columns: each seed's mean over calibration subsets; "
           "“− FP” = quantized minus float metric (the degradation).", "",
           "| Method | " + " | ".join(t for _, t, _ in cols) + " |",
           "|---|" + "---|" * len(cols)]
  for v, m in ss["metrics"].items():
    lines.append(f"| {LABELS.get(v, v)} | " + " | ".join(_iv(m[k], d) if k in m else "–"
                                                        for k, _, d in cols) + " |")
  if ss["paired"]:
    base = LABELS.get(ss["baseline"], ss["baseline"])
    lines += ["", f"## Paired difference to {base} (variant − {base}, same seed)", "",
              "| Method | " + " | ".join(f"Δ {t}" for _, t, _ in cols) + " |",
              "|---|" + "---|" * len(cols)]
    for v, m in ss["paired"].items():
      lines.append(f"| {LABELS.get(v, v)} | " + " | ".join(
          _iv(m[k], d, signed=True) if k in m else "–" for k, _, d in cols) + " |")
    lines += ["", f"`*`: the {conf} interval of the paired difference excludes 0 (a difference "
              f"beyond the seed noise of {n} seeds); without `*` the difference is inside the "
              "noise."]
  lines.append("")
  return lines


def _kinds_section(results: dict) -> list[str]:
  """The Systematic Outliers taxonomy (An et al., ICLR 2025), one row per variant: which method
  removes which kind. Variants without "outlier_kinds" (older results.json) get a row of dashes."""
  rows = {v: r.get("outlier_kinds") for v, r in results.items()}
  known = [k for k in rows.values() if k]
  if not known:
    return []
  th = known[0]["thresholds"]
  lines = ["## Outlier kinds (Systematic Outliers taxonomy)", "",
           "| Method | Massive act. frac | Act max/median | Massive dims | W max/median | "
           "W avg kurtosis | W outlier channels | LN γ max/median | Sink heads | "
           "First-token mass | Max received | Mean row sum | Sink ‖v‖ / other |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
  for v, k in rows.items():
    if not k:
      lines.append(f"| {LABELS.get(v, v)} |" + " – |" * 12)
      continue
    s = k["summary"]
    lines.append(
        f"| {LABELS.get(v, v)} | {sci(s['act_massive_frac'])} | {num(s['act_max_ratio'], 1)} | "
        f"{dims(s['act_outlier_dims'])} | {num(s['weight_max_ratio'], 1)} | "
        f"{num(s['weight_avg_kurtosis'])} | {s['weight_outlier_channels']} | "
        f"{num(s['ln_gamma_max_ratio'], 1)} | {num(s['attn_sink_head_frac'])} | "
        f"{num(s['attn_first_token_mass'], 3)} | {num(s['attn_max_received_mass'], 3)} | "
        f"{num(s['attn_mean_row_sum'], 3)} | {num(s['attn_sink_value_ratio'])} |")
  lines += ["", "| Method | Shared act./weight dims | Massive act. at sink positions | "
            "Sink positions | Weight outlier dims | LN γ outlier dims |",
            "|---|---|---|---|---|---|"]
  for v, k in rows.items():
    if k:
      s = k["summary"]
      lines.append(f"| {LABELS.get(v, v)} | {dims(s['shared_outlier_dims'])} | "
                   f"{num(s['act_in_sink_positions'])} | {dims(s['attn_sink_positions'])} | "
                   f"{dims(s['weight_outlier_dims'])} | {dims(s['ln_gamma_outlier_dims'])} |")
  lines += ["", f"Activation: entries of the outlier modules with |x| > max({th['tau_abs']:g}, "
            f"{th['k']:g} × the sequence's median |x|) (Sun et al.'s massive activations); "
            "act max/median = max over modules and sequences of max |x| / median |x|. "
            "Weight: kernels of every projection as [fan_in, fan_out]; max|w| / median|w| (max "
            "over matrices), Pearson kurtosis (mean over matrices), channels whose max |w| > "
            f"{th['weight_k']:g} × the median channel max; LN γ: max|γ| / median|γ|. Attention: "
            "mass a key receives = mean over queries of its probability; a sink is a key receiving "
            f"> {th['sink_threshold']:g} in a head; rows of softmax1 / sigmoid-type normalizers "
            "need not sum to 1 (mean row sum). The kinds are those of An et al. (ICLR 2025); the "
            "thresholds are this project's operationalisation (docs/metrics.md).", ""]
  return lines
