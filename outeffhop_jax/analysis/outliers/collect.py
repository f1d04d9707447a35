"""Outlier metrics of a model over an evaluation set (docs/metrics.md), collected in one jitted loop.

Inside one `nnx.jit` function per batch, `nn.capture` records the sown module outputs and reduces
each outlier module x_BTD (rows = `as_rows(x, "sequence")`, weighted by the batch's example mask) to

    kurtosis sum, inf-norm sum, beyond-6-sigma sum over rows;  max |x| per hidden dim [D];
    histogram of log10 |x| (fixed bins);  mean attention to token 0 per head (sink rate).

so only small arrays leave the device. Token inputs may come with their attention mask, as
`((ids_BT, attention_mask_BT), w_B)`: the model then reads the mask and every statistic counts real
tokens only (rows = a sequence's real tokens; sink rate over real queries), so padding never enters
the metrics. `collect(model, family, batches)` sums them on the host:
per-module row means -> `metrics.aggregate` (avg kurtosis = mean over modules, max inf-norm = max
over modules), the per-layer profile, the dominant hidden dimensions and the attention-sink rate.
"""
from __future__ import annotations

import re
from typing import Iterable

import jax.numpy as jnp
import numpy as np
from flax import nnx

from outeffhop_jax.analysis.outliers import metrics
from outeffhop_jax.nn import capture

HIST_EDGES = np.linspace(-4.0, 4.0, 81)  # log10 |x| bins: 1e-4 .. 1e4
SINK_THRESHOLD = 0.3
_LAYER = re.compile(r"(?:^|\.)layers\.(\d+)\.")


def outlier_modules(family: str) -> tuple[str, ...]:
  from outeffhop_jax.models import OUTLIER_MODULES  # models imports nn only: no cycle

  if family not in OUTLIER_MODULES:
    raise ValueError(f"family must be one of {sorted(OUTLIER_MODULES)}, got {family!r}")
  return tuple(OUTLIER_MODULES[family])


def select_modules(names: Iterable[str], family: str, modules: Iterable[str] | None = None
                   ) -> list[str]:
  """Captured names whose leaf is in `modules` (default: the family's OUTLIER_MODULES), sorted by
  (layer, name)."""
  leaves = set(outlier_modules(family) if modules is None else modules)
  return sorted((n for n in names if n.split(".")[-1] in leaves), key=module_order)


def module_order(name: str):
  """Sort key of captured module names: by layer (unlayered last), then name."""
  layer = layer_of(name)
  return (layer if layer is not None else 10**9, name)


def layer_of(name: str) -> int | None:
  m = _LAYER.search(name)
  return int(m.group(1)) if m else None


def _module_stats(x, w_B, tok_BT=None):
  """One module output x [B, ..., D] with row weights w_B (and optionally real-token flags
  tok_BT [B, T] for outputs [B, T, D]) -> summed statistics."""
  rows = metrics.as_rows(x, "sequence").astype(jnp.float32)
  absx = jnp.abs(x.astype(jnp.float32))
  w_x = jnp.broadcast_to(w_B.reshape((-1,) + (1,) * (x.ndim - 1)), x.shape)
  where = None
  if tok_BT is not None and x.ndim == 3 and x.shape[:2] == tok_BT.shape:
    w_x = w_x * tok_BT[..., None].astype(w_x.dtype)
    where = metrics.as_rows(jnp.broadcast_to(tok_BT[..., None] > 0, x.shape), "sequence")
  dim_max = jnp.max(jnp.where(w_x > 0, absx, 0.0), axis=tuple(range(x.ndim - 1)))
  # log10 |x| histogram with fixed bins; padded rows get weight 0.
  nb = len(HIST_EDGES) - 1
  lo, width = HIST_EDGES[0], HIST_EDGES[1] - HIST_EDGES[0]
  idx = jnp.clip(jnp.floor((jnp.log10(absx + 1e-30) - lo) / width), 0, nb - 1).astype(jnp.int32)
  hist = jnp.zeros((nb,), jnp.float32).at[idx.reshape(-1)].add(w_x.reshape(-1))
  return {"kurtosis": jnp.sum(metrics.kurtosis(rows, where) * w_B),
          "inf_norm": jnp.sum(metrics.inf_norm(rows, where) * w_B),
          "beyond_6sigma": jnp.sum(metrics.beyond_sigma_fraction(rows, 6.0, where) * w_B),
          "dim_max": dim_max, "hist": hist}


def _batch_stats(model, inputs, w_B, family: str, num_maps: int, modules=None):
  """Per-batch reductions; runs under nnx.jit (capture inside the traced function).

  inputs: the model's input array, or (input_ids_BT, attention_mask_BT) for token models."""
  if isinstance(inputs, tuple):
    ids_BT, tok_BT = inputs
    fn = lambda m: m(ids_BT, attention_mask=tok_BT)  # noqa: E731
    tok_BT = tok_BT.astype(jnp.float32)
  else:
    fn, tok_BT = (lambda m: m(inputs)), None
  _, acts = capture(model, fn, attention_probs=True)
  out = {"modules": {n: _module_stats(acts[n], w_B, tok_BT)
                     for n in select_modules(acts, family, modules)},
         "sink": {}, "maps": {}}
  for name, p_BNTS in acts.items():
    if not name.endswith("attn_probs"):
      continue
    B = w_B.shape[0]
    if p_BNTS.shape[0] != B:
      # Models that fold another axis into the batch (STanHop-Net: series) record [B * C, N, T, S];
      # those rows are extra heads of their example for the sink rate.
      p_BNTS = p_BNTS.reshape((B, -1) + p_BNTS.shape[2:])
    T = p_BNTS.shape[2]
    p0_BNT = p_BNTS[..., 0].astype(jnp.float32)
    if tok_BT is not None and tok_BT.shape == (B, T):
      # Mean over a row's real queries, then summed over rows like the unmasked form.
      q_BT = tok_BT / jnp.maximum(jnp.sum(tok_BT, axis=1, keepdims=True), 1.0)
      out["sink"][name] = jnp.einsum("bnt,bt,b->n", p0_BNT, q_BT, w_B)
    else:
      # Sum over (rows, queries) of the attention each head pays to the first key.
      out["sink"][name] = jnp.einsum("bnt,b->n", p0_BNT, w_B) / T
    out["maps"][name] = p_BNTS[0, :, :num_maps, :num_maps]
  return out, jnp.sum(w_B)


_jit_batch_stats = nnx.jit(_batch_stats, static_argnums=(3, 4, 5))


def collect(model: nnx.Module, family: str, batches: Iterable[tuple], *, num_maps: int = 64,
            top_k: int = 5, modules: Iterable[str] | None = None) -> dict:
  """Outlier metrics of `model` over `batches` of (inputs, row_weights_B) (weights 0 = padding).

  inputs: what the model's __call__ reads (token ids [B, T] or images [B, H, W, C]), or
  (input_ids_BT, attention_mask_BT) to pass the mask and count real tokens only.
  modules: leaf names of the captured modules to measure (default: OUTLIER_MODULES[family]), e.g.
  ("ffn_output", "ffn_layer_norm", "attention_layer_norm") for BERT.
  Returns a JSON-ready dict (see `summarize`) plus "maps": {layer name: attention probabilities of
  the first example [N, num_maps, num_maps]} (numpy) for heat maps.
  """
  totals, count, maps = None, 0.0, None
  modules = None if modules is None else tuple(modules)
  for inputs, w_B in batches:
    inputs = (tuple(jnp.asarray(a) for a in inputs) if isinstance(inputs, (tuple, list))
              else jnp.asarray(inputs))
    stats, n = _jit_batch_stats(model, inputs, jnp.asarray(w_B, jnp.float32), family, num_maps,
                                modules)
    stats = _to_numpy(stats)
    if maps is None:
      maps = stats["maps"]
    count += float(n)
    totals = stats if totals is None else _accumulate(totals, stats)
  if totals is None or count == 0:
    raise ValueError("collect: no evaluation rows (empty batches or all-zero row weights)")
  out = summarize(totals, count, top_k=top_k)
  out["maps"] = maps
  return out


def _to_numpy(tree):
  if isinstance(tree, dict):
    return {k: _to_numpy(v) for k, v in tree.items()}
  return np.asarray(tree)


def _accumulate(a, b):
  out = {"modules": {}, "sink": {}, "maps": a["maps"]}
  for n, s in a["modules"].items():
    t = b["modules"][n]
    out["modules"][n] = {k: (np.maximum(s[k], t[k]) if k == "dim_max" else s[k] + t[k]) for k in s}
  out["sink"] = {n: a["sink"][n] + b["sink"][n] for n in a["sink"]}
  return out


def summarize(totals: dict, count: float, *, top_k: int = 5) -> dict:
  """Summed batch statistics -> per-module row means, the papers' summary and the profiles."""
  per_module = {}
  # jax returns dicts key-sorted: restore the (layer, name) order of `select_modules`.
  order = sorted(totals["modules"], key=module_order)
  for n in order:
    s = totals["modules"][n]
    per_module[n] = {"kurtosis": float(s["kurtosis"] / count), "inf_norm": float(s["inf_norm"] / count),
                     "beyond_6sigma": float(s["beyond_6sigma"] / count), "layer": layer_of(n)}
  summary = metrics.aggregate(per_module)
  summary["beyond_6sigma"] = float(np.mean([m["beyond_6sigma"] for m in per_module.values()]))

  # Per-layer profile: mean kurtosis and max inf-norm over the layer's modules.
  layers = sorted({m["layer"] for m in per_module.values() if m["layer"] is not None})
  per_layer = {"layer": layers, "kurtosis": [], "inf_norm": []}
  for i in layers:
    ms = [m for m in per_module.values() if m["layer"] == i]
    per_layer["kurtosis"].append(float(np.mean([m["kurtosis"] for m in ms])))
    per_layer["inf_norm"].append(float(np.max([m["inf_norm"] for m in ms])))

  # Hidden dimensions carrying the largest |x| over all outlier modules, and where.
  names = order
  dim_max_MD = np.stack([totals["modules"][n]["dim_max"] for n in names])
  dim_max_D = dim_max_MD.max(axis=0)
  median = float(np.median(dim_max_D))
  top = []
  for d in np.argsort(-dim_max_D)[:top_k]:
    col = dim_max_MD[:, d]
    top.append({"dim": int(d), "max_abs": float(dim_max_D[d]), "ratio_to_median": float(
        dim_max_D[d] / max(median, 1e-12)), "module": names[int(col.argmax())],
        "modules_over_half": [names[i] for i in np.nonzero(col > 0.5 * col.max())[0]]})

  # Attention sinks: mean attention to the first token per head (Gu et al.): rate over all heads.
  sink = {n: (v / count).tolist() for n, v in sorted(totals["sink"].items(),
                                                       key=lambda kv: layer_of(kv[0]) or 0)}
  heads = np.concatenate([np.asarray(v) for v in sink.values()]) if sink else np.zeros(0)
  summary["sink_rate"] = float(np.mean(heads > SINK_THRESHOLD)) if heads.size else float("nan")
  return {"summary": summary, "modules": per_module, "module_set": names, "per_layer": per_layer,
          "top_dims": top, "dim_max": dim_max_D.tolist(), "dim_max_median": median,
          "module_dim_max": {n: totals["modules"][n]["dim_max"].tolist() for n in names},
          "sink_first_token": sink,
          "hist": {"edges_log10": HIST_EDGES.tolist(),
                   "modules": {n: totals["modules"][n]["hist"].tolist() for n in names}}}
