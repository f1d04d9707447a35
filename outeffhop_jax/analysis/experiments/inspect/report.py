"""report.md of `inspect`: the tables of `checkpoint.run`'s result dict."""
from __future__ import annotations

import os

from outeffhop_jax.analysis._format import grouped, mean_std, num

MASSIVE_FRACTION = 0.5  # a value of dim d is "massive" when |x| > this × max |x| of d
SINK_THRESHOLD = 0.3    # a head sinks when its mean attention to token 0 exceeds this


def markdown(r: dict) -> str:
  o, s = r["outliers"], r["outliers"]["summary"]
  L = [f"# Checkpoint report: `{os.path.basename(r['path'].rstrip(os.sep))}`", "",
       f"`{r['path']}`: {r['source']} checkpoint, {r['architecture']} (family `{r['family']}`)"
       + (", " + ", ".join(f"{k} {v}" for k, v in r["info"].items()) if r["info"] else "") + ".",
       f"Inputs: {r['data']}.", "",
       "## Outliers", "",
       f"Avg kurtosis {num(s['avg_kurtosis'])} (max {num(s['max_kurtosis'])} in "
       f"`{s['max_kurtosis_module']}`), max inf-norm {num(s['max_inf_norm'])} (in "
       f"`{s['max_inf_norm_module']}`), sink rate {num(s['sink_rate'])}, >6σ fraction "
       f"{s['beyond_6sigma']:.1e}, over the outlier modules " + ", ".join(
           f"`{n}`" for n in sorted({m.split('.')[-1] for m in o["module_set"]})) +
       " (docs/metrics.md: kurtosis per row = sequence, averaged).", "",
       "| Layer | Avg kurtosis | Max inf-norm |", "|---|---|---|"]
  pl = o["per_layer"]
  for layer, k, i in zip(pl["layer"], pl["kurtosis"], pl["inf_norm"]):
    L.append(f"| {layer} | {grouped(k, 2)} | {grouped(i, 2)} |")
  L += ["", "## Dominant hidden dimensions and their carriers", "",
        f"A value of dimension d is massive when |x| > {MASSIVE_FRACTION:g} × the largest |x| of "
        "d (in the module where d peaks).", "",
        "| Dim | Max \\|x\\| | × median dim | Peak module | Massive values | Carrier tokens | "
        "Carrier positions |", "|---|---|---|---|---|---|---|"]
  by_dim = {c["dim"]: c for c in r["carriers"]}
  for t in o["top_dims"]:
    c = by_dim.get(t["dim"])
    toks = ", ".join(f"`{x['token']}` ({x['count']})" for x in c["tokens"]) if c else "–"
    poss = ", ".join(f"{x['position']} ({x['count']})" for x in c["positions"]) if c else "–"
    cnt = f"{c['massive_count']} / {c['values']}" if c else "–"
    L.append(f"| {t['dim']} | {grouped(t['max_abs'], 2)} | {grouped(t['ratio_to_median'], 1)} | "
             f"{t['module']} | {cnt} | {toks} | {poss} |")
  if r["carriers"]:
    c = r["carriers"][0]
    L += ["", f"Dominant dimension **{c['dim']}**: max |x| {grouped(c['max_abs'], 2)}, median "
          f"|x| of its other values {num(c['median_abs_other'])}; carried mostly by "
          f"`{c['tokens'][0]['token']}` at position {c['positions'][0]['position']}."]
  k = r["outlier_kinds"]["summary"]
  L += ["", "## Attention sinks", "",
        f"Sink heads (mean attention to token 0 > {SINK_THRESHOLD:g}): "
        f"{sum(len(v) for v in r['sink_heads'].values())} of "
        f"{sum(len(v) for v in o['sink_first_token'].values())}; heads where one key receives "
        f"> {r['outlier_kinds']['thresholds']['sink_threshold']:g} of the mass (any position): "
        f"{num(k['attn_sink_head_frac'])} of {k['attn_num_heads']}; first-token mass "
        f"{num(k['attn_first_token_mass'], 3)}.", "",
        "| Layer | Sink heads (token 0) | Mean attention to token 0 per head |", "|---|---|---|"]
  for n, v in o["sink_first_token"].items():
    layer = n.split(".attn_probs")[0]
    L.append(f"| {layer} | {r['sink_heads'][layer] or '–'} | {', '.join(f'{x:.2f}' for x in v)} |")
  L += ["", "## Weight outliers", "",
        f"Weight max/median {num(k['weight_max_ratio'], 1)}, weight kurtosis (mean over matrices) "
        f"{num(k['weight_avg_kurtosis'])}, LayerNorm γ max/median "
        f"{num(k['ln_gamma_max_ratio'], 1)}. Kernels worst for per-tensor weight quantization:", "",
        "| Kernel | max \\|w\\| / std | max \\|w\\| | Output feature | Zeroed at 8 bits |",
        "|---|---|---|---|---|"]
  for w in r["weights"]:
    L.append(f"| {w['kernel']} | {w['ratio']:.0f} | {w['max_abs']:.2f} | {w['out_dim']} | "
             f"{100 * w['zeroed']:.0f} % |")
  L += ["", "## Fake quantization: fidelity to FP32", "",
        f"Fidelity = mean cosine between the quantized and the FP32 {r['output']} (one vector per "
        "token or image" + ("; each vector centred first, since softmax ignores a common shift"
                            if r.get("centered") else "")
        + "); docs/w8a8.md protocol (weights symmetric per tensor, W4: MSE clipping; "
        "activations asymmetric per tensor, running min-max), mean ± std over "
        f"{r['options']['calib_subsets']} calibration subsets.", "",
        "| Setting | Fidelity | 1 − fidelity | Per subset |", "|---|---|---|---|",
        f"| FP32 | {r['fp32_fidelity']:.5f} | {1 - r['fp32_fidelity']:.1e} | – |"]
  for name, q in r["quantized"].items():
    L.append(f"| {name} | {mean_std(q, 5)} | {1 - q['mean']:.1e} | "
             f"{', '.join(f'{v:.5f}' for v in q['values'])} |")
  abl = r.get("ablation")
  if abl:
    base = abl["rows"]["none"]["fidelity"]
    L += ["", f"## Which activation groups do the damage ({abl['setting']})", "",
          f"W{abl['weight_bits']} weights always, one group of activation quantizers on at a time "
          "(calibration subset 0), most damaging first; Δ against weights only.", "",
          "| Activations quantized | Quantizers | Fidelity | Δ |", "|---|---|---|---|"]
    for g in ["none"] + abl["ranking"] + ["all"]:
      x = abl["rows"][g]
      label = {"none": "none (weights only)", "all": "all (full protocol)"}.get(g, g)
      L.append(f"| {label} | {x['quantizers']} | {x['fidelity']:.5f} | "
               f"{x['fidelity'] - base:+.1e} |")
  if r.get("plots"):
    L += ["", "Figures: " + ", ".join(f"`{p}`" for p in r["plots"])]
  L += ["", f"Total time {r.get('total_seconds', 0):.0f} s.", ""]
  return "\n".join(L)
