"""Outlier metrics (docs/metrics.md) of a BERT-style sentence encoder over padded (ids, mask) batches.

`outliers(model, batch_list)` runs `collect` with the attention mask (real tokens only) over the
paper's BERT module set -- per layer the FFN output ("ffn_output") and its LayerNorm
("ffn_layer_norm") -- plus the attention-output LayerNorms ("attention_layer_norm"), and adds
what a pretrained encoder's study reports: per-kind layer profiles, the dominant outlier
dimension (the argmax of max |x| in the most FFN-output layers), a histogram of its values against
a typical dimension, the tokens that carry its massive values, the sink rate, and the linear
kernels whose outlier weights per-tensor weight quantization handles worst (`weight_outliers`).
"""
from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp
import numpy as np
from flax import nnx

from outeffhop_jax.analysis.outliers import collect
from outeffhop_jax.analysis.outliers import metrics
from outeffhop_jax.nn import capture

Batch = tuple[np.ndarray, np.ndarray]  # (input_ids_BT int32, attention_mask_BT int32)
FAMILY = "bert"
# The BERT set of docs/metrics.md (FFN output and its LayerNorm) plus the attention-output LayerNorms.
PAPER_MODULES = ("ffn_output", "ffn_layer_norm")
MODULES = PAPER_MODULES + ("attention_layer_norm",)


def _kind(name: str) -> str:
  return name.split(".")[-1]


def _column_values(model, ids_BT, mask_BT, name: str, dims):
  _, acts = capture(model, lambda m: m(ids_BT, attention_mask=mask_BT))
  return acts[name][..., jnp.asarray(dims)]


_jit_column_values = nnx.jit(_column_values, static_argnums=(3, 4))


def outliers(model: nnx.Module, batch_list: Sequence[Batch], *, modules: Sequence[str] = MODULES,
             top_k: int = 5, value_batches: int = 4, bins: int = 70) -> dict:
  """Outlier metrics (docs/metrics.md) of an encoder over real tokens of `batch_list` (JSON-ready).

  Modules: per layer "ffn_output", "ffn_layer_norm" (the paper set, summarized in "summary") and
  "attention_layer_norm" ("summary_all" includes them). Rows are sequences (flattened real tokens).
  Returns, besides `collect`'s per-module metrics, top dims and log10|x| histograms:
    by_kind: {kind: {"layer", "kurtosis", "inf_norm" per layer, "dim_max" [D] over its layers}}
    dominant: the dimension that is the argmax of max|x| in the most FFN-output layers, with
      those layers, every module where it is the argmax, its max |x| and ratio to the median dim
    values: log10 |x| histograms of the dominant dimension vs a typical one (the median-max dim)
      in the module where it peaks, over the first `value_batches` batches, and the token ids
      carrying its massive values (|x| > half its max) with their counts
    sink_rate: heads whose mean attention to token 0 ([CLS]) exceeds 0.3, over all heads
    weights: `weight_outliers` (the kernels worst for per-tensor weight quantization)
  """
  rows = [((ids, mask), (mask.sum(axis=1) > 0).astype(np.float32)) for ids, mask in batch_list]
  r = collect.collect(model, FAMILY, rows, top_k=top_k, modules=tuple(modules))
  r.pop("maps")
  per_module = r["modules"]
  paper = {n: m for n, m in per_module.items() if _kind(n) in PAPER_MODULES}
  r["summary_all"] = r["summary"]
  r["summary"] = {**metrics.aggregate(paper), "sink_rate": r["summary_all"]["sink_rate"],
                  "beyond_6sigma": float(np.mean([m["beyond_6sigma"] for m in paper.values()]))}
  r["paper_module_set"] = list(paper)

  dim_max = {n: np.asarray(v) for n, v in r["module_dim_max"].items()}
  by_kind = {}
  for kind in modules:
    names = [n for n in per_module if _kind(n) == kind]
    if names:
      by_kind[kind] = {"layer": [per_module[n]["layer"] for n in names],
                       "kurtosis": [per_module[n]["kurtosis"] for n in names],
                       "inf_norm": [per_module[n]["inf_norm"] for n in names],
                       "argmax_dim": [int(dim_max[n].argmax()) for n in names],
                       "dim_max": np.max([dim_max[n] for n in names], axis=0).tolist()}
  r["by_kind"] = by_kind

  kind = "ffn_output" if "ffn_output" in by_kind else next(iter(by_kind))
  argmax = by_kind[kind]["argmax_dim"]
  dim = max(set(argmax), key=lambda d: (argmax.count(d), by_kind[kind]["dim_max"][d]))
  all_D = np.asarray(r["dim_max"])
  peak = max(dim_max, key=lambda n: dim_max[n][dim])
  r["dominant"] = {
      "dim": dim, "kind": kind,
      "layers": [l for l, a in zip(by_kind[kind]["layer"], argmax) if a == dim],
      "modules": [n for n in dim_max if int(dim_max[n].argmax()) == dim],
      "max_abs": float(all_D[dim]), "ratio_to_median": float(all_D[dim] / max(
          float(np.median(all_D)), 1e-12)), "peak_module": peak}
  r["values"] = _values_histogram(model, batch_list[:value_batches], peak, dim,
                                  int(np.argsort(dim_max[peak])[len(dim_max[peak]) // 2]), bins)
  r["sink_rate"] = r["summary"]["sink_rate"]
  r["weights"] = weight_outliers(model)
  return r


def _values_histogram(model, batch_list, name, dim, typical, bins):
  vals, ids_at = [[], []], []
  for ids, mask in batch_list:
    v = np.asarray(_jit_column_values(model, jnp.asarray(ids), jnp.asarray(mask), name,
                                      (dim, typical)))
    real = mask > 0
    vals[0].append(v[..., 0][real])
    vals[1].append(v[..., 1][real])
    ids_at.append(ids[real])
  a, b, ids_at = np.concatenate(vals[0]), np.concatenate(vals[1]), np.concatenate(ids_at)
  # log10 |x| bins: the dominant dimension is bimodal (a bulk of typical size and massive values
  # on a few tokens), which linear bins would squeeze into two bars.
  edges = np.linspace(-4.0, 3.0, bins + 1)
  log = lambda x: np.log10(np.abs(x) + 1e-30)  # noqa: E731
  massive = np.abs(a) > 0.5 * np.abs(a).max()
  tok, count = np.unique(ids_at[massive], return_counts=True)
  top = np.argsort(-count)[:5]
  return {"module": name, "dim": dim, "typical_dim": typical, "edges_log10": edges.tolist(),
          "counts_dim": np.histogram(log(a), edges)[0].tolist(),
          "counts_typical": np.histogram(log(b), edges)[0].tolist(),
          "std_dim": float(a.std()), "std_typical": float(b.std()),
          "median_abs_dim": float(np.median(np.abs(a))),
          "median_abs_typical": float(np.median(np.abs(b))),
          "max_abs_dim": float(np.abs(a).max()), "max_abs_typical": float(np.abs(b).max()),
          "massive_fraction": float(massive.mean()),
          "massive_token_ids": [[int(tok[i]), int(count[i])] for i in top],
          "tokens": int(a.size)}


def weight_outliers(model: nnx.Module, *, bits: int = 8, top: int = 8) -> list[dict]:
  """The linear kernels with the largest max|w| / std(w), i.e. the worst for per-tensor weights.

  Per kernel W (as [in, out]): ratio = max|w| / std(w); out_dim = the output feature holding max|w|
  (for an FFN output, a hidden dimension); zeroed = the fraction of weights that symmetric per-
  tensor `bits`-bit min-max quantization rounds to 0 (|w| < Delta / 2, Delta = max|w| / (2^(b-1)-1)).
  Returns the `top` kernels, worst first.
  """
  rows = []
  for path, node in nnx.iter_graph(model):
    if not (isinstance(node, nnx.Param) and path and path[-1] == "kernel"):
      continue
    w = np.asarray(node[...], np.float64)
    # HeadsIn kernels are [D, N, H] and HeadsOut [N, H, D]: the output features are H or D.
    w = w.reshape(w.shape[0], -1) if "out" not in map(str, path) else w.reshape(-1, w.shape[-1])
    a = np.abs(w)
    delta = a.max() / (2 ** (bits - 1) - 1)
    rows.append({"kernel": ".".join(map(str, path[:-1])), "ratio": float(a.max() / w.std()),
                 "max_abs": float(a.max()), "std": float(w.std()),
                 "out_dim": int(np.unravel_index(a.argmax(), a.shape)[1]),
                 "zeroed": float(np.mean(a < delta / 2))})
  return sorted(rows, key=lambda r: -r["ratio"])[:top]

