"""results.md: the papers' table layout, with the published figures beside ours for paper presets.

Published numbers are those of shared/REFERENCE_RESULTS.md (OutEffHop Table 1, mean of 3 seeds;
Quantizable Transformers Table 2), keyed by our preset and variant names.
"""
from __future__ import annotations

import math

LABELS = {"vanilla": "Vanilla", "softmax1": "OutEffHop (softmax1)", "clipped": "Clipped",
          "clipped1": "Clipped OutEffHop", "gated": "Gated", "gated1": "Gated OutEffHop",
          "sigmoid": "Sigmoid attention", "softplus": "Softplus (LSSA)", "stablemax": "Stablemax",
          "softpick": "Softpick", "outgate": "Output gate (Qiu et al.)"}
PAIRS = (("vanilla", "softmax1"), ("clipped", "clipped1"), ("gated", "gated1"))

# (avg kurtosis, max inf-norm, FP16 metric, W8A8 metric) -- OutEffHop (Hu et al., ICML 2024), Table 1.
OUTEFFHOP = {
    "bert_base": {"vanilla": (418.7, 255.9, 6.237, 7.154), "softmax1": (26.6, 33.6, 6.209, 6.295),
                  "clipped": (14.2, 33.6, 6.118, 6.189), "clipped1": (11.8, 30.1, 6.133, 6.199),
                  "gated": (17.8, 34.1, 6.230, 6.299), "gated1": (15.6, 32.8, 6.214, 6.279)},
    "opt_125m": {"vanilla": (23341.5, 92.8, 15.974, 42.012), "softmax1": (21.5, 13.3, 15.916, 16.429),
                 "clipped": (9731.1, 43.8, 16.042, 30.825),
                 "clipped1": (24127.3, 67.6, 16.118, 29.269),
                 "gated": (90.3, 13.7, 15.677, 16.236), "gated1": (11.4, 7.6, 15.751, 16.148)},
    "vit_s16": {"vanilla": (37.1, 272.2, 76.810, 74.935), "softmax1": (31.6, 249.2, 76.788, 76.313),
                "clipped": (33.9, 257.6, 76.612, 75.179), "clipped1": (24.6, 196.2, 76.871, 76.083),
                "gated": (45.1, 269.3, 69.922, 67.479), "gated1": (22.0, 60.2, 74.089, 73.958)},
}
# (avg kurtosis, max inf-norm, FP16/32 metric, W8A8 metric) -- Bondarenko et al. (NeurIPS 2023), Table 2.
QUANTIZABLE = {
    "bert_base": {"vanilla": (3076, 735, 4.49, 1294), "clipped": (80, 21.5, 4.39, 4.52),
                  "gated": (201, 39.2, 4.45, 4.65)},
    "opt_125m": {"vanilla": (1778, 340, 15.84, 21.18), "clipped": (19728, 63.2, 16.29, 37.20),
                 "gated": (18.9, 8.7, 15.55, 16.02)},
    "vit_s16": {"vanilla": (1018, 359, 80.75, 69.24), "clipped": (22.9, 73.7, 80.89, 79.77),
                "gated": (19.9, 79.8, 81.01, 79.82)},
}


def _f(x, digits=2):
  if x is None or (isinstance(x, float) and math.isnan(x)):
    return "–"
  if abs(x) >= 1000:
    return f"{x:.0f}"
  return f"{x:.{digits}f}"


def _pm(q):
  return f"{_f(q['mean'], 3)} ± {_f(q['std'], 3)}"


# The FP metric of each family, as (key in a result's "fp", column title).
_METRIC = {"vit": ("top1", "top-1 %"), "stanhop": ("mse", "MSE")}


def _metric(family: str):
  return _METRIC.get(family, ("perplexity", "ppl"))


def markdown(study: dict) -> str:
  preset, results = study["preset"], study["results"]
  first = next(iter(results.values()))
  metric = _metric(first["family"])[1]
  paper = preset in OUTEFFHOP
  lines = [f"# Outlier study: `{preset}`", ""]
  steps = {r["step"] for r in results.values()}
  lines.append(f"Trained steps: {', '.join(map(str, sorted(steps)))}; evaluation batches: "
               f"{first['eval_batches']}; W8A8 mean ± std over {first['calibration']['subsets']} "
               f"calibration subsets of {first['calibration']['batches']} batches"
               + (f" (activation percentile {first['calibration']['percentile']})"
                  if first["calibration"]["percentile"] else " (running min-max, momentum 0.9)")
               + ". Avg kurtosis = mean over modules of the per-row kurtosis; max inf-norm = max "
               "over modules (DESIGN §4).")
  lines.append("")
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
    row = (f"| {LABELS.get(v, v)} | {_f(r['fp'][key], 3)} | {_f(s['max_inf_norm'])} | "
           f"{_f(s['avg_kurtosis'])} | {_pm(w8) if w8 else '–'} | {_f(s['sink_rate'])} | "
           f"{s['beyond_6sigma']:.1e} |")
    if paper:
      pub = OUTEFFHOP[preset].get(v)
      row += (" " + " | ".join(_f(x) for x in pub) + " |") if pub else " – | – | – | – |"
    lines.append(row)
  if paper and preset in QUANTIZABLE:
    lines += ["", "Quantizable Transformers (Bondarenko et al. 2023), Table 2, same preset:", "",
              f"| Method | FP {metric} | Max inf-norm | Avg kurtosis | W8A8 |", "|---|---|---|---|---|"]
    for v, (k, i, fp, w) in QUANTIZABLE[preset].items():
      lines.append(f"| {LABELS[v]} | {_f(fp)} | {_f(i)} | {_f(k)} | {_f(w)} |")

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
      cells = [_pm(r["quantized"][s]) if s in r["quantized"] else "–" for s in ["W8A8"] + settings]
      lines.append(f"| {LABELS.get(v, v)} | {_f(r['fp'][key], 3)} | " + " | ".join(cells) + " |")
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
    dims = ", ".join(f"{t['dim']} ({_f(t['max_abs'])}, ×{_f(t['ratio_to_median'], 1)})" for t in top[:3])
    lines.append(f"| {LABELS.get(v, v)} | {_f(s['max_kurtosis'])} ({s['max_kurtosis_module']}) | "
                 f"{s['max_inf_norm_module']} | {dims} |")
  lines += ["", "Module set: " + ", ".join(f"`{n}`" for n in first["outliers"]["module_set"]), ""]
  lines += _kinds_section(results)
  return "\n".join(lines) + "\n"


def _e(x):
  """A fraction in scientific notation ("–" for None / NaN)."""
  return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.1e}"


def _dims(ds, n=4):
  if not ds:
    return "–"
  return ", ".join(map(str, ds[:n])) + (", …" if len(ds) > n else "")


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
        f"| {LABELS.get(v, v)} | {_e(s['act_massive_frac'])} | {_f(s['act_max_ratio'], 1)} | "
        f"{_dims(s['act_outlier_dims'])} | {_f(s['weight_max_ratio'], 1)} | "
        f"{_f(s['weight_avg_kurtosis'])} | {s['weight_outlier_channels']} | "
        f"{_f(s['ln_gamma_max_ratio'], 1)} | {_f(s['attn_sink_head_frac'])} | "
        f"{_f(s['attn_first_token_mass'], 3)} | {_f(s['attn_max_received_mass'], 3)} | "
        f"{_f(s['attn_mean_row_sum'], 3)} | {_f(s['attn_sink_value_ratio'])} |")
  lines += ["", "| Method | Shared act./weight dims | Massive act. at sink positions | "
            "Sink positions | Weight outlier dims | LN γ outlier dims |",
            "|---|---|---|---|---|---|"]
  for v, k in rows.items():
    if k:
      s = k["summary"]
      lines.append(f"| {LABELS.get(v, v)} | {_dims(s['shared_outlier_dims'])} | "
                   f"{_f(s['act_in_sink_positions'])} | {_dims(s['attn_sink_positions'])} | "
                   f"{_dims(s['weight_outlier_dims'])} | {_dims(s['ln_gamma_outlier_dims'])} |")
  lines += ["", f"Activation: entries of the outlier modules with |x| > max({th['tau_abs']:g}, "
            f"{th['k']:g} × the sequence's median |x|) (Sun et al.'s massive activations); "
            "act max/median = max over modules and sequences of max |x| / median |x|. "
            "Weight: kernels of every projection as [fan_in, fan_out]; max|w| / median|w| (max "
            "over matrices), Pearson kurtosis (mean over matrices), channels whose max |w| > "
            f"{th['weight_k']:g} × the median channel max; LN γ: max|γ| / median|γ|. Attention: "
            "mass a key receives = mean over queries of its probability; a sink is a key receiving "
            f"> {th['sink_threshold']:g} in a head; rows of softmax1 / sigmoid-type normalizers "
            "need not sum to 1 (mean row sum). The kinds are those of An et al. (ICLR 2025); the "
            "thresholds are this project's operationalisation (outlier_kinds.py).", ""]
  return lines
