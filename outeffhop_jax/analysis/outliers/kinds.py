"""The outlier kinds of "Systematic Outliers in Large Language Models" (An et al., ICLR 2025, arXiv
2502.06415), measured on one model: activation, weight and attention outliers, and their ties.

The paper shows the three occur together: weight outliers (large rows/columns of the projections
that write the residual stream, e.g. the FFN's down projection) create activation outliers
(massive activations at a few fixed hidden dimensions of a few tokens: the start token, delimiters),
which make those tokens attention outliers (keys receiving a large share of attention while their
values are small), i.e. implicit context-aware scaling factors of softmax attention. The
thresholds below are this project's operationalisation, each an argument (the paper's released
code plots magnitudes against the median and attention maps rather than applying a cut-off; the
paper's text was not available to check for numeric thresholds). One pure module per kind:

  activation.py   massive activations of module outputs (jnp, under jit)
  weight.py       projection matrices and normalization scales (NumPy, the model is only read)
  attention.py    received attention mass per key, sinks, the sinks' value norms
  recorder.py     the jitted capture pass (a model copy whose value projections also sow)

The criteria and thresholds are written out in docs/metrics.md.

`collect_kinds(model, family, batches)` measures all three in one jitted pass per batch and
returns a JSON-ready dict: "summary" (flat numbers, see `SUMMARY_KEYS`), per-module / per-layer
detail and the thresholds used.
"""
from __future__ import annotations

import math
from typing import Iterable

import jax.numpy as jnp
import numpy as np

from outeffhop_jax.analysis.outliers import collect, recorder
from outeffhop_jax.analysis.outliers.activation import (MASSIVE_ABS, MASSIVE_RATIO,
                                                        massive_activations, massive_mask,
                                                        massive_threshold)
from outeffhop_jax.analysis.outliers.attention import (SINK_THRESHOLD, attention_outliers,
                                                       attention_received, attention_summary,
                                                       sink_value_ratio)
from outeffhop_jax.analysis.outliers.weight import (WEIGHT_CHANNEL_K, gamma_stats,
                                                    max_median_ratio, outlier_channels,
                                                    weight_kurtosis, weight_outliers, weight_stats)

# The pure per-kind functions, importable from here as before the split.
__all__ = ["MASSIVE_ABS", "MASSIVE_RATIO", "SINK_THRESHOLD", "SUMMARY_KEYS", "TOP", "WEIGHT_CHANNEL_K",
           "attention_outliers", "attention_received", "attention_summary", "collect_kinds",
           "gamma_stats", "massive_activations", "massive_mask", "massive_threshold",
           "max_median_ratio", "outlier_channels", "sink_value_ratio", "weight_kurtosis",
           "weight_outliers", "weight_stats"]
TOP = 8                  # dims / positions listed in the summary

# "summary" of `collect_kinds`. act_*: pooled over the outlier modules and evaluation rows (frac =
# massive entries / entries; per_seq = massive entries per sequence; max_ratio = max over modules
# and sequences of max|x| / median|x|; dims / positions: most frequent hidden dims / token positions
# of massive entries). weight_*: over projection matrices (max_ratio max, avg_kurtosis mean,
# outlier_channels = total in + out outlier channels, outlier_dims = those on the residual stream).
# ln_gamma_*: over LayerNorm scales. attn_*: over all heads of all layers (sink_head_frac = heads
# with a sink, first_token_mass = mean received by key 0, max_received_mass = max over heads and
# keys, mean_row_sum, sink_positions = most frequent sink keys, sink_value_ratio = mean over heads
# with a sink). Ties: shared_outlier_dims = massive-activation dims that are also weight outlier
# dims; act_in_sink_positions = share of massive entries at token positions that are sink keys.
SUMMARY_KEYS = (
    "act_massive_frac", "act_massive_per_seq", "act_max_ratio", "act_max_ratio_module",
    "act_outlier_dims", "act_num_outlier_dims", "act_outlier_positions",
    "weight_max_ratio", "weight_max_ratio_module", "weight_avg_kurtosis", "weight_max_kurtosis",
    "weight_max_kurtosis_module", "weight_outlier_channels", "weight_outlier_dims",
    "weight_num_matrices", "ln_gamma_max_ratio", "ln_gamma_max_module", "ln_gamma_outlier_dims",
    "attn_sink_head_frac", "attn_first_token_mass", "attn_max_received_mass", "attn_mean_row_sum",
    "attn_sink_positions", "attn_sink_value_ratio", "attn_num_heads",
    "shared_outlier_dims", "act_in_sink_positions")


def _add(a, b, op=np.add):
  """Elementwise op of two sums, zero-padding the smaller (batches of different lengths)."""
  a, b = np.asarray(a), np.asarray(b)
  if a.shape != b.shape:
    shape = np.maximum(a.shape, b.shape)
    a = np.pad(a, [(0, s - n) for s, n in zip(shape, a.shape)])
    b = np.pad(b, [(0, s - n) for s, n in zip(shape, b.shape)])
  return op(a, b)


def _accumulate(tot, new):
  if tot is None:
    return new
  out = {"act": {}, "attn": {}}
  for kind in ("act", "attn"):
    for n, s in tot[kind].items():
      out[kind][n] = {key: _add(v, new[kind][n][key], np.maximum if key == "ratio_max" else np.add)
                      for key, v in s.items()}
  return out


def _to_numpy(tree):
  if isinstance(tree, dict):
    return {k: _to_numpy(v) for k, v in tree.items()}
  return np.asarray(tree, np.float64)


def _top(counts, top: int = TOP) -> list[int]:
  counts = np.asarray(counts)
  idx = np.argsort(-counts, kind="stable")[:top]
  return [int(i) for i in idx if counts[i] > 0]


def _max_item(d: dict, key: str):
  vals = {n: s[key] for n, s in d.items() if not math.isnan(s[key])}
  if not vals:
    return float("nan"), None
  n = max(vals, key=vals.get)
  return float(vals[n]), n


def _nanmean(xs) -> float:
  xs = [x for x in xs if not math.isnan(x)]
  return float(np.mean(xs)) if xs else float("nan")


def collect_kinds(model, family: str, batches: Iterable[tuple], *,
                  tau_abs: float = MASSIVE_ABS, k: float = MASSIVE_RATIO,
                  weight_k: float = WEIGHT_CHANNEL_K, sink_threshold: float = SINK_THRESHOLD,
                  value_norms: bool = True) -> dict:
  """Activation, weight and attention outliers of `model` over `batches` of (inputs, row_weights_B).

  inputs: what the model's __call__ reads; row weights 0 mark padding rows. Activation outliers
  are measured on the family's outlier modules (`collect.select_modules`), attention outliers on
  every recorded attention map, weight outliers on the parameters. value_norms: also record the
  value vectors of `MultiHeadAttention` layers (on a copy of the model) for the sink value ratio.
  Returns {"summary": {SUMMARY_KEYS: JSON numbers / lists}, "activation", "weight", "layer_norm",
  "attention" (per module / per layer), "per_layer" (lists over layer indices), "thresholds"}.
  """
  m = recorder.with_value_recorders(model) if value_norms else model
  tot = None
  for inputs, w_B in batches:
    tot = _accumulate(tot, _to_numpy(recorder.batch_sums(
        m, jnp.asarray(inputs), jnp.asarray(w_B, jnp.float32), family, float(tau_abs), float(k))))
  if tot is None or not tot["act"] or float(next(iter(tot["act"].values()))["rows"]) == 0:
    raise ValueError("collect_kinds: no evaluation rows (empty batches or all-zero row weights)")
  act, act_summary, act_dims, pos_counts = _activation_part(tot["act"])
  wo = weight_outliers(model, k=weight_k)
  mats, lns = wo["matrices"], wo["layer_norms"]
  weight_summary = _weight_part(mats, lns)
  attn, attn_summary, sink_pos = _attention_part(tot["attn"], sink_threshold)
  count = sum(float(s["count"]) for s in tot["act"].values())
  in_sink = (float(sum(pos_counts[j] for j in sink_pos if j < len(pos_counts)) / count)
             if count > 0 else float("nan"))
  summary = {**act_summary, **weight_summary, **attn_summary,
             # Ties between the kinds (the paper: weight outliers <-> activation outliers share
             # hidden dims; massive activations sit at the tokens that are attention sinks).
             "shared_outlier_dims": sorted(set(act_dims) & set(weight_summary["weight_outlier_dims"])),
             "act_in_sink_positions": in_sink}
  return {"summary": {key: summary[key] for key in SUMMARY_KEYS}, "activation": act,
          "weight": mats, "layer_norm": lns, "attention": attn,
          "per_layer": _per_layer(act, mats, attn),
          "thresholds": {"tau_abs": float(tau_abs), "k": float(k), "weight_k": float(weight_k),
                         "sink_threshold": float(sink_threshold)}}


def _activation_part(tot_act: dict):
  """Per-module activation numbers, their pooled act_* summary, all massive dims, position counts."""
  act = {}
  for n in sorted(tot_act, key=collect.module_order):
    s = tot_act[n]
    act[n] = {"massive_frac": float(s["count"] / s["entries"]),
              "massive_per_seq": float(s["count"] / s["rows"]),
              "max_ratio": float(s["ratio_max"]), "mean_ratio": float(s["ratio_sum"] / s["rows"]),
              "dims": _top(s["dim_counts"]), "layer": collect.layer_of(n)}
  dim_counts = _sum_padded([tot_act[n]["dim_counts"] for n in act])
  pos_counts = _sum_padded([tot_act[n]["pos_counts"] for n in act])
  count = float(sum(tot_act[n]["count"] for n in act))
  rows = float(next(iter(tot_act.values()))["rows"])
  act_max, act_max_module = _max_item(act, "max_ratio")
  act_dims = [int(d) for d in np.nonzero(dim_counts)[0]]
  summary = {
      "act_massive_frac": count / max(float(sum(tot_act[n]["entries"] for n in act)), 1.0),
      "act_massive_per_seq": count / max(rows, 1.0),
      "act_max_ratio": act_max, "act_max_ratio_module": act_max_module,
      "act_outlier_dims": _top(dim_counts), "act_num_outlier_dims": len(act_dims),
      "act_outlier_positions": _top(pos_counts)}
  return act, summary, act_dims, pos_counts


def _weight_part(mats: dict, lns: dict) -> dict:
  """The weight_* and ln_gamma_* summary of `weight_outliers`' matrices and normalization scales."""
  w_max, w_max_module = _max_item(mats, "max_ratio")
  w_kmax, w_kmax_module = _max_item(mats, "kurtosis")
  ln_max, ln_max_module = _max_item(lns, "max_ratio")
  return {
      "weight_max_ratio": w_max, "weight_max_ratio_module": w_max_module,
      "weight_avg_kurtosis": _nanmean([s["kurtosis"] for s in mats.values()]),
      "weight_max_kurtosis": w_kmax, "weight_max_kurtosis_module": w_kmax_module,
      "weight_outlier_channels": int(sum(len(s["in_channels"]) + len(s["out_channels"])
                                         for s in mats.values())),
      "weight_outlier_dims": sorted({d for s in mats.values() for d in s["hidden_dims"]}),
      "weight_num_matrices": len(mats),
      "ln_gamma_max_ratio": ln_max, "ln_gamma_max_module": ln_max_module,
      "ln_gamma_outlier_dims": sorted({d for s in lns.values() for d in s["dims"]})}


def _attention_part(tot_attn: dict, sink_threshold: float):
  """Per-layer attention numbers from the pooled sums, the attn_* summary, sink key positions."""
  attn, heads_sink, heads_first, heads_rows, heads_vratio, max_recv = {}, [], [], [], [], []
  sink_pos = {}
  for n in sorted(tot_attn, key=collect.module_order):
    s = tot_attn[n]
    recv, row = s["recv"] / max(s["nq"], 1.0), s["rows"] / max(s["nq"], 1.0)
    a = attention_summary(recv, row, threshold=sink_threshold)
    a["layer"] = collect.layer_of(n)
    if "vnorm" in s:
      vr = sink_value_ratio(s["vnorm"] / max(s["vrows"], 1.0), recv, threshold=sink_threshold)
      a["sink_value_ratio"] = [None if math.isnan(x) else float(x) for x in vr]
      heads_vratio += [x for x in vr if not math.isnan(x)]
    attn[n] = a
    heads_sink += (np.asarray(recv) > sink_threshold).any(axis=1).tolist()
    heads_first += a["first_token_mass"]
    heads_rows += a["mean_row_sum"]
    max_recv.append(a["max_received"])
    for _, j, _ in a["sinks"]:
      sink_pos[j] = sink_pos.get(j, 0) + 1
  summary = {
      "attn_sink_head_frac": float(np.mean(heads_sink)) if heads_sink else float("nan"),
      "attn_first_token_mass": _nanmean(heads_first),
      "attn_max_received_mass": float(max(max_recv)) if max_recv else float("nan"),
      "attn_mean_row_sum": _nanmean(heads_rows),
      "attn_sink_positions": sorted(sink_pos, key=lambda j: (-sink_pos[j], j))[:TOP],
      "attn_sink_value_ratio": _nanmean(heads_vratio),
      "attn_num_heads": len(heads_sink)}
  return attn, summary, sink_pos


def _sum_padded(arrays) -> np.ndarray:
  out = np.zeros(0)
  for a in arrays:
    out = _add(out, a)
  return out


def _per_layer(act: dict, mats: dict, attn: dict) -> dict:
  """Lists over layer indices: the per-layer profile of each kind (for plots)."""
  layers = sorted({s["layer"] for d in (act, mats, attn) for s in d.values()
                   if s["layer"] is not None})

  def pick(d, i, key, reduce):
    vals = [s[key] for s in d.values() if s["layer"] == i]
    vals = [v for v in vals if not (isinstance(v, float) and math.isnan(v))]
    return float(reduce(vals)) if vals else float("nan")

  return {"layer": layers,
          "act_max_ratio": [pick(act, i, "max_ratio", max) for i in layers],
          "weight_max_ratio": [pick(mats, i, "max_ratio", max) for i in layers],
          "weight_kurtosis": [pick(mats, i, "kurtosis", np.mean) for i in layers],
          "attn_sink_head_frac": [pick(attn, i, "sink_head_frac", np.mean) for i in layers],
          "attn_max_received": [pick(attn, i, "max_received", max) for i in layers],
          "attn_first_token_mass": [
              _nanmean([x for s in attn.values() if s["layer"] == i for x in s["first_token_mass"]])
              for i in layers]}
