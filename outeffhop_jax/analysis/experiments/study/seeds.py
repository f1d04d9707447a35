"""Seed statistics of a multi-seed study: per-metric t-intervals and paired differences to vanilla.

    m = seed_metrics(result)               # {metric: float} of one (variant, seed) result
    s = seed_stats(per_seed, settings)     # {variant: {metric: {...}}, "vs_<baseline>": ...}

Metrics per seed: the FP metric ("fp": perplexity, top-1 % or MSE), avg kurtosis, max inf-norm,
sink rate, the sink-head fraction and first-token mass of the outlier kinds, and per quantization
setting S the quantized metric "S" (mean over calibration subsets) and its degradation
"S Δ" = S - fp. Every metric gets mean ± 95 % t-interval over seeds (`analysis.stats.t_interval`);
every variant but the baseline gets the paired difference variant_k - baseline_k over seeds k
(`analysis.stats.paired_difference`), which is what "paired by seed" buys: the seed-to-seed
variation both share cancels.
"""
from __future__ import annotations

import dataclasses

from outeffhop_jax.analysis import stats

BASELINE = "vanilla"
CONFIDENCE = 0.95
# (metric key, title, the outliers/outlier_kinds summary path) of the outlier metrics.
OUTLIER_METRICS = (("avg_kurtosis", "Avg kurtosis", ("outliers", "avg_kurtosis")),
                   ("max_inf_norm", "Max inf-norm", ("outliers", "max_inf_norm")),
                   ("sink_rate", "Sink rate", ("outliers", "sink_rate")),
                   ("sink_heads", "Sink heads", ("outlier_kinds", "attn_sink_head_frac")),
                   ("first_token_mass", "First-token mass", ("outlier_kinds",
                                                             "attn_first_token_mass")))


def _fp_key(family: str) -> str:
  return {"vit": "top1", "stanhop": "mse"}.get(family, "perplexity")


def seed_metrics(result: dict) -> dict[str, float]:
  """The scalar metrics of one (variant, seed) result of `run.analyse_variant`."""
  fp = float(result["fp"][_fp_key(result["family"])])
  out = {"fp": fp}
  for key, _, (part, name) in OUTLIER_METRICS:
    summary = (result.get(part) or {}).get("summary", {})
    if name in summary:
      out[key] = float(summary[name])
  for setting, q in result.get("quantized", {}).items():
    out[setting] = float(q["mean"])
    out[f"{setting} Δ"] = float(q["mean"]) - fp
  return out


def _interval_dict(iv: stats.Interval, values) -> dict:
  d = dataclasses.asdict(iv)
  d.update(low=iv.low, high=iv.high, excludes_zero=iv.excludes_zero(), values=list(values))
  return d


def seed_stats(per_seed: dict[str, list[dict]], baseline: str = BASELINE) -> dict:
  """{"metrics": {variant: {metric: interval}}, "paired": {variant: {metric: interval of the
  paired difference to `baseline`}}, "baseline"}; intervals as dicts (mean, half_width, n,
  confidence, low, high, excludes_zero, values). "paired" is empty without the baseline."""
  per_metric = {v: [seed_metrics(r) for r in rs] for v, rs in per_seed.items()}
  out = {"baseline": baseline, "confidence": CONFIDENCE, "metrics": {}, "paired": {}}
  for v, ms in per_metric.items():
    keys = [k for k in ms[0] if all(k in m for m in ms)]
    out["metrics"][v] = {k: _interval_dict(stats.t_interval([m[k] for m in ms], CONFIDENCE, k),
                                           [m[k] for m in ms]) for k in keys}
  if baseline in per_metric:
    base = per_metric[baseline]
    for v, ms in per_metric.items():
      if v == baseline or len(ms) != len(base):
        continue
      keys = [k for k in ms[0] if all(k in m for m in ms + base)]
      out["paired"][v] = {
          k: _interval_dict(stats.paired_difference([m[k] for m in ms], [b[k] for b in base],
                                                    CONFIDENCE),
                            [m[k] - b[k] for m, b in zip(ms, base)]) for k in keys}
  return out
