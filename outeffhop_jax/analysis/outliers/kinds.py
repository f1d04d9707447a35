"""The outlier kinds of "Systematic Outliers in Large Language Models" (An et al., ICLR 2025, arXiv
2502.06415), measured on one model: activation, weight and attention outliers, and their ties.

The paper shows the three occur together: weight outliers (large rows/columns of the projections
that write the residual stream, e.g. the FFN's down projection) create activation outliers
(massive activations at a few fixed hidden dimensions of a few tokens: the start token, delimiters),
which make those tokens attention outliers (keys receiving a large share of attention while their
values are small), i.e. implicit context-aware scaling factors of softmax attention. The
thresholds below are this project's operationalisation, each an argument (the paper's released
code plots magnitudes against the median and attention maps rather than applying a cut-off; the
paper's text was not available to check for numeric thresholds):

  activation  x of one module output, one sequence b: entry massive iff
              |x| > max(tau_abs, k * median_b |x|)      (median over the sequence's whole output,
              T x D, as the paper's and Sun et al.'s code compute it). Defaults tau_abs = 100,
              k = 1000: the "massive activation" criterion of Sun et al. (COLM 2024, §2: "magnitude
              surpasses 100 and is at least or around 1,000 times larger than the median magnitude
              of its hidden state"), which the systematic-outliers paper builds on. On small CPU
              models (|x| of a few tens) it rarely fires; the scale-free max |x| / median |x| is
              reported beside it.
  weight      per matrix W (kernels of nnx.Linear / nnx.Conv / HeadsIn / HeadsOut, reshaped to
              [fan_in, fan_out]): max|W| / median|W|; Pearson kurtosis of the entries; outlier
              channels = input rows / output columns whose max |w| > k_w * the median over channels
              of that max (k_w = 5). Embedding tables, biases and gates are skipped. LayerNorm /
              RMSNorm scales gamma separately: max|gamma| / median|gamma| and the dims over k_w *
              median (the paper ties LN weights to the massive dims).
  attention   of one layer's map p [B, N, T, S]: received mass of key j in head n = mean over valid
              queries of p[n, i, j] (masked pairs count 0); key j is a sink of head n iff its
              received mass > 0.3 (the Gu et al. threshold of `metrics.sink_rate`, generalised
              from the first token to any key). Normalizers whose rows do not sum to 1 (sigmoid,
              softpick, softmax1) are read as they are: the mass is absolute, and the mean row sum
              (how much attention a head hands out; 1 for softmax) is reported beside it. Sink
              value ratio: mean ||v_j|| of a head's sink keys / that of its other keys (the paper:
              attention outliers carry near-zero values). Under a causal mask key 0 is seen by
              every query, so even a uniform causal head gives it H_T / T (0.21 at T = 16, 0.024 at
              T = 256): the threshold is meant for sequences of tens of tokens or more.

`collect_kinds(model, family, batches)` measures all three in one jitted pass per batch (the capture
machinery of `collect`) and returns a JSON-ready dict: "summary" (flat numbers, see
`SUMMARY_KEYS`), per-module / per-layer detail and the thresholds used.
"""
from __future__ import annotations

import math
from typing import Iterable

import jax.numpy as jnp
import numpy as np
from flax import nnx

from outeffhop_jax.analysis.outliers import collect
from outeffhop_jax.analysis.outliers import metrics
from outeffhop_jax.nn import MultiHeadAttention, capture
from outeffhop_jax.nn.projections import HeadsIn, HeadsOut

MASSIVE_ABS = 100.0      # Sun et al. 2024, §2
MASSIVE_RATIO = 1000.0   # ... "at least or around 1,000 times larger than the median"
WEIGHT_CHANNEL_K = 5.0   # outlier channel: max |w| > 5 x the median channel max
SINK_THRESHOLD = collect.SINK_THRESHOLD  # 0.3, Gu et al. (ICLR 2025)
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


# ---------------------------------------------------------------------------------------------
# Activation outliers (jnp: usable under jit)

def massive_threshold(x, *, tau_abs: float = MASSIVE_ABS, k: float = MASSIVE_RATIO):
  """Per-sequence threshold max(tau_abs, k * median |x_b|): x [B, ...] -> [B] float32."""
  rows = jnp.abs(metrics.as_rows(x, "sequence").astype(jnp.float32))
  return jnp.maximum(tau_abs, k * jnp.median(rows, axis=-1))


def massive_mask(x, *, tau_abs: float = MASSIVE_ABS, k: float = MASSIVE_RATIO):
  """Boolean x.shape: |x| > max(tau_abs, k * median of |x| over its sequence)."""
  thr = massive_threshold(x, tau_abs=tau_abs, k=k)
  return jnp.abs(x.astype(jnp.float32)) > thr.reshape((-1,) + (1,) * (x.ndim - 1))


def massive_activations(x, *, tau_abs: float = MASSIVE_ABS, k: float = MASSIVE_RATIO,
                        row_weights=None) -> dict:
  """Sums of the massive-activation criterion over the sequences of x [B, P, D] (P positions; other
  middle axes are flattened into P), weighted by row_weights [B] (0 = padding row; default 1).

  Returns float32 arrays: count (weighted number of massive entries), entries (weighted number of
  entries), dim_counts [D], pos_counts [P], ratio_sum and ratio_max of the per-sequence
  max|x| / median|x| (sequences with median 0 left out), rows (sum of weights).
  """
  B, D = x.shape[0], x.shape[-1]
  x = x.astype(jnp.float32).reshape(B, -1, D)
  w = jnp.ones((B,), jnp.float32) if row_weights is None else jnp.asarray(row_weights, jnp.float32)
  hit = massive_mask(x, tau_abs=tau_abs, k=k).astype(jnp.float32) * w[:, None, None]
  rows = metrics.as_rows(x, "sequence")
  med = jnp.median(jnp.abs(rows), axis=-1)
  ok = (med > 0) & (w > 0)
  ratio = jnp.where(ok, metrics.inf_norm(rows) / jnp.where(ok, med, 1.0), 0.0)
  return {"count": jnp.sum(hit), "entries": jnp.sum(w) * x.shape[1] * D,
          "dim_counts": jnp.sum(hit, axis=(0, 1)), "pos_counts": jnp.sum(hit, axis=(0, 2)),
          "ratio_sum": jnp.sum(ratio * w), "ratio_max": jnp.max(ratio), "rows": jnp.sum(w)}


# ---------------------------------------------------------------------------------------------
# Weight outliers (NumPy float64, on the host)

def weight_kurtosis(w) -> float:
  """Pearson kurtosis of all entries of w: E[(w - mean)^4] / s^4, s the unbiased std (as
  `metrics.kurtosis`) but without its +1e-6, which for weights of std ~0.02 (s^4 ~ 2e-7) would
  dominate the denominator. NaN for a constant w."""
  a = np.asarray(w, np.float64).reshape(-1)
  c = a - a.mean()
  s2 = np.sum(c * c) / max(a.size - 1, 1)
  return float(np.mean(c**4) / s2**2) if s2 > 0 else float("nan")


def max_median_ratio(a) -> float:
  """max |a| / median |a| (float64); NaN when the median is 0."""
  a = np.abs(np.asarray(a, np.float64)).reshape(-1)
  med = float(np.median(a))
  return float(a.max() / med) if med > 0 else float("nan")


def outlier_channels(w2d, axis: int, k: float = WEIGHT_CHANNEL_K) -> list[int]:
  """Channels of a [fan_in, fan_out] matrix whose max |w| exceeds k * the median channel max.

  axis=0: input channels (rows); axis=1: output channels (columns).
  """
  a = np.abs(np.asarray(w2d, np.float64))
  ch_max = a.max(axis=1 - axis)
  return [int(i) for i in np.nonzero(ch_max > k * np.median(ch_max))[0]]


def weight_stats(w2d, *, k: float = WEIGHT_CHANNEL_K) -> dict:
  """One matrix [fan_in, fan_out]: max_ratio, kurtosis, max_abs, in/out outlier channels."""
  w2d = np.asarray(w2d, np.float64)
  if w2d.ndim != 2:
    raise ValueError(f"w2d must be [fan_in, fan_out], got shape {w2d.shape}")
  return {"shape": list(w2d.shape), "max_abs": float(np.abs(w2d).max()),
          "max_ratio": max_median_ratio(w2d), "kurtosis": weight_kurtosis(w2d),
          "in_channels": outlier_channels(w2d, 0, k), "out_channels": outlier_channels(w2d, 1, k)}


def gamma_stats(gamma, *, k: float = WEIGHT_CHANNEL_K) -> dict:
  """A LayerNorm / RMSNorm scale gamma [D]: max|gamma| / median|gamma|, argmax and the dims with
  |gamma| > k * median |gamma|."""
  a = np.abs(np.asarray(gamma, np.float64)).reshape(-1)
  return {"max_ratio": max_median_ratio(a), "max_abs": float(a.max()), "argmax": int(a.argmax()),
          "dims": [int(i) for i in np.nonzero(a > k * np.median(a))[0]]}


def _axis_names(param) -> tuple | None:
  meta = param.get_metadata() if hasattr(param, "get_metadata") else {}
  for key in ("out_sharding", "sharding_names", "sharding"):
    names = meta.get(key)
    if names is not None:
      return tuple(names)
  return None


def _matrix(module):
  """(kernel param, number of leading fan-in axes) of a projection module, else None."""
  if isinstance(module, (nnx.Linear, HeadsIn)):
    return module.kernel, 1
  if isinstance(module, HeadsOut):
    return module.kernel, 2
  if isinstance(module, nnx.Conv):
    return module.kernel, module.kernel[...].ndim - 1
  return None


def weight_outliers(model: nnx.Module, *, k: float = WEIGHT_CHANNEL_K) -> dict:
  """Weight outliers of every projection and normalization scale of `model`.

  Returns {"matrices": {dotted path: weight_stats + "hidden_dims"}, "layer_norms": {dotted path:
  gamma_stats}}. "hidden_dims" are the outlier channels on a kernel axis named "embed" (the
  residual stream, by the parameters' logical axis names): the dims the paper ties to
  activation outliers (e.g. the output columns of fc2 / out_proj, the input rows of fc1 / Q, K, V).
  """
  mats, norms = {}, {}
  for path, module in nnx.iter_modules(model):
    name = ".".join(map(str, path))
    found = _matrix(module)
    if found is not None:
      param, n_in = found
      w = np.asarray(param[...], np.float64)
      s = weight_stats(w.reshape(math.prod(w.shape[:n_in]), -1), k=k)
      names = _axis_names(param)
      hidden = []
      if names is not None and len(names) == w.ndim:
        # A fan side is the residual stream only when it is the single axis named "embed".
        if n_in == 1 and names[0] == "embed":
          hidden += s["in_channels"]
        if w.ndim - n_in == 1 and names[-1] == "embed":
          hidden += s["out_channels"]
      s["hidden_dims"] = sorted(set(hidden))
      s["layer"] = collect.layer_of(name + ".")
      mats[name] = s
    elif (isinstance(module, (nnx.LayerNorm, nnx.RMSNorm))
          and getattr(module, "scale", None) is not None):
      norms[name] = {**gamma_stats(module.scale[...], k=k), "layer": collect.layer_of(name + ".")}
  return {"matrices": mats, "layer_norms": norms}


# ---------------------------------------------------------------------------------------------
# Attention outliers

def _attention_sums(p_BNTS, q_BT, mask=None):
  """Weighted sums over queries: received [N, S], row sums [N] and the query weight total."""
  p = jnp.asarray(p_BNTS, jnp.float32)
  if mask is not None:
    p = jnp.where(jnp.broadcast_to(jnp.asarray(mask, bool), p.shape), p, 0.0)
  q = jnp.asarray(q_BT, jnp.float32)[:, None, :, None]  # [B, 1, T, 1]
  return jnp.sum(p * q, axis=(0, 2)), jnp.sum(jnp.sum(p, -1, keepdims=True) * q, axis=(0, 2, 3)), \
      jnp.sum(q_BT)


def attention_received(p_BNTS, *, mask=None, valid_T=None):
  """Mean attention mass received per key and handed out per query, over valid queries.

  p_BNTS: one layer's attention map. mask: boolean, broadcastable to [B, N, T, S] (True = attend);
  masked pairs count 0 whatever p holds there. valid_T: boolean [B, T] of real queries (padding
  queries are left out of the means). Returns (received [N, S], mean row sum [N]) as float32:
  received[n, j] = sum_{b, i valid} p[b, n, i, j] / #valid queries.
  """
  B, _, T, _ = p_BNTS.shape
  q = jnp.ones((B, T), jnp.float32) if valid_T is None else jnp.asarray(valid_T, jnp.float32)
  recv, rows, nq = _attention_sums(p_BNTS, q, mask)
  nq = jnp.maximum(nq, 1.0)
  return recv / nq, rows / nq


def attention_summary(received_NS, row_sum_N, *, threshold: float = SINK_THRESHOLD) -> dict:
  """One layer's received masses -> sinks and summary numbers (NumPy float64).

  sinks: (head, key, mass) with mass > threshold; sink_head_frac: fraction of heads with a sink;
  first_token_mass [N]: received mass of key 0; max_received: max over heads and keys;
  mean_row_sum [N].
  """
  r = np.asarray(received_NS, np.float64)
  is_sink = r > threshold
  return {"sink_head_frac": float(np.mean(is_sink.any(axis=1))),
          "sinks": [[int(n), int(j), float(r[n, j])] for n, j in zip(*np.nonzero(is_sink))],
          "first_token_mass": r[:, 0].tolist(), "max_received": float(r.max()),
          "mean_row_sum": np.asarray(row_sum_N, np.float64).tolist()}


def attention_outliers(p_BNTS, *, mask=None, valid_T=None,
                       threshold: float = SINK_THRESHOLD) -> dict:
  """`attention_received` then `attention_summary`, plus "received" [N, S] (a list)."""
  recv, rows = attention_received(p_BNTS, mask=mask, valid_T=valid_T)
  return {**attention_summary(recv, rows, threshold=threshold),
          "received": np.asarray(recv, np.float64).tolist()}


def sink_value_ratio(value_norm_KS, received_NS, *, threshold: float = SINK_THRESHOLD):
  """Per head: mean ||v|| of its sink keys / mean ||v|| of its other keys ([N], NaN where a head
  has no sink or no other key). value_norm_KS: mean value-vector norm per kv head and key position;
  query head n reads kv head n // (N / K) (grouped-query attention)."""
  v = np.asarray(value_norm_KS, np.float64)
  r = np.asarray(received_NS, np.float64)
  N, K = r.shape[0], v.shape[0]
  out = np.full((N,), np.nan)
  for n in range(N):
    sink = r[n] > threshold
    if sink.any() and not sink.all():
      vn = v[n // max(N // K, 1)]
      other = vn[~sink].mean()
      out[n] = vn[sink].mean() / other if other > 0 else np.nan
  return out


# ---------------------------------------------------------------------------------------------
# The collector

class _ValueRecorder(nnx.Module):
  """Wraps an attention's value projection and sows its output v [B, S, K, H] as "vectors"."""

  def __init__(self, inner: nnx.Module):
    self.inner = inner

  def __call__(self, x):
    v = self.inner(x)
    self.sow(nnx.Intermediate, "vectors", v)
    return v


def _with_value_recorders(model: nnx.Module) -> nnx.Module:
  """A copy of `model` (arrays shared) whose attention value projections sow their outputs."""
  m = nnx.clone(model)
  for _, module in list(nnx.iter_modules(m)):
    if isinstance(module, MultiHeadAttention) and not isinstance(module.value, _ValueRecorder):
      module.value = _ValueRecorder(module.value)
  return m


_PROBS, _VALUES = "attn_probs", "value.vectors"


def _fold(a, B):
  """Models that fold another axis into the batch (STanHop-Net: series) record [B * C, ...]."""
  return a if a.shape[0] == B else a.reshape((B, -1) + a.shape[1:])


def _batch_kinds(model, inputs, w_B, family: str, tau_abs: float, k: float):
  """Per-batch sums; runs under nnx.jit (capture inside the traced function)."""
  _, acts = capture(model, lambda m: m(inputs), attention_probs=True)
  B = w_B.shape[0]
  out = {"act": {n: massive_activations(acts[n], tau_abs=tau_abs, k=k, row_weights=w_B)
                 for n in collect.select_modules(acts, family)}, "attn": {}}
  for name, p in acts.items():
    if not name.endswith(_PROBS):
      continue
    p = _fold(p, B)
    if p.ndim == 5:  # [B, C, N, T, S]: the folded axis' rows are extra heads of their example
      p = p.reshape((B, -1) + p.shape[3:])
    T = p.shape[2]
    recv, rows, nq = _attention_sums(p, jnp.broadcast_to(w_B[:, None], (B, T)))
    stats = {"recv": recv, "rows": rows, "nq": nq}
    v = acts.get(name[:-len(_PROBS)] + _VALUES)
    if v is not None:
      v = _fold(v, B)  # [B, (C,) S, K, H]
      if v.ndim == 5:
        v = jnp.moveaxis(v, 1, 2).reshape(B, v.shape[2], -1, v.shape[-1])
      norm_BSK = jnp.linalg.norm(v.astype(jnp.float32), axis=-1)
      stats["vnorm"] = jnp.einsum("bsk,b->ks", norm_BSK, w_B)
      stats["vrows"] = jnp.sum(w_B)
    out["attn"][name] = stats
  return out


_jit_batch_kinds = nnx.jit(_batch_kinds, static_argnums=(3, 4, 5))


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


def collect_kinds(model: nnx.Module, family: str, batches: Iterable[tuple], *,
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
  m = _with_value_recorders(model) if value_norms else model
  tot = None
  for inputs, w_B in batches:
    tot = _accumulate(tot, _to_numpy(_jit_batch_kinds(
        m, jnp.asarray(inputs), jnp.asarray(w_B, jnp.float32), family, float(tau_abs), float(k))))
  if tot is None or not tot["act"] or float(next(iter(tot["act"].values()))["rows"]) == 0:
    raise ValueError("collect_kinds: no evaluation rows (empty batches or all-zero row weights)")

  # Activations: per module, then pooled over modules.
  act = {}
  for n in sorted(tot["act"], key=collect.module_order):
    s = tot["act"][n]
    act[n] = {"massive_frac": float(s["count"] / s["entries"]),
              "massive_per_seq": float(s["count"] / s["rows"]),
              "max_ratio": float(s["ratio_max"]), "mean_ratio": float(s["ratio_sum"] / s["rows"]),
              "dims": _top(s["dim_counts"]), "layer": collect.layer_of(n)}
  dim_counts = _sum_padded([tot["act"][n]["dim_counts"] for n in act])
  pos_counts = _sum_padded([tot["act"][n]["pos_counts"] for n in act])
  count = float(sum(tot["act"][n]["count"] for n in act))
  rows = float(next(iter(tot["act"].values()))["rows"])
  act_max, act_max_module = _max_item(act, "max_ratio")

  # Weights and normalization scales.
  wo = weight_outliers(model, k=weight_k)
  mats, lns = wo["matrices"], wo["layer_norms"]
  w_max, w_max_module = _max_item(mats, "max_ratio")
  w_kmax, w_kmax_module = _max_item(mats, "kurtosis")
  ln_max, ln_max_module = _max_item(lns, "max_ratio")
  weight_dims = sorted({d for s in mats.values() for d in s["hidden_dims"]})

  # Attention: per layer from the pooled sums.
  attn, heads_sink, heads_first, heads_rows, heads_vratio, max_recv = {}, [], [], [], [], []
  sink_pos = {}
  for n in sorted(tot["attn"], key=collect.module_order):
    s = tot["attn"][n]
    recv, row = s["recv"] / max(s["nq"], 1.0), s["rows"] / max(s["nq"], 1.0)
    a = attention_summary(recv, row, threshold=sink_threshold)
    a["layer"] = collect.layer_of(n)
    if "vnorm" in s:
      vr = sink_value_ratio(s["vnorm"] / max(s["vrows"], 1.0), recv, threshold=sink_threshold)
      a["sink_value_ratio"] = [None if math.isnan(x) else float(x) for x in vr]
      heads_vratio += [x for x in vr if not math.isnan(x)]
    attn[n] = a
    has_sink = (np.asarray(recv) > sink_threshold).any(axis=1)
    heads_sink += has_sink.tolist()
    heads_first += a["first_token_mass"]
    heads_rows += a["mean_row_sum"]
    max_recv.append(a["max_received"])
    for _, j, _ in a["sinks"]:
      sink_pos[j] = sink_pos.get(j, 0) + 1

  act_dims = [int(d) for d in np.nonzero(dim_counts)[0]]
  in_sink = (float(sum(pos_counts[j] for j in sink_pos if j < len(pos_counts)) / count)
             if count > 0 else float("nan"))
  summary = {
      "act_massive_frac": count / max(float(sum(tot["act"][n]["entries"] for n in act)), 1.0),
      "act_massive_per_seq": count / max(rows, 1.0),
      "act_max_ratio": act_max, "act_max_ratio_module": act_max_module,
      "act_outlier_dims": _top(dim_counts), "act_num_outlier_dims": len(act_dims),
      "act_outlier_positions": _top(pos_counts),
      "weight_max_ratio": w_max, "weight_max_ratio_module": w_max_module,
      "weight_avg_kurtosis": _nanmean([s["kurtosis"] for s in mats.values()]),
      "weight_max_kurtosis": w_kmax, "weight_max_kurtosis_module": w_kmax_module,
      "weight_outlier_channels": int(sum(len(s["in_channels"]) + len(s["out_channels"])
                                         for s in mats.values())),
      "weight_outlier_dims": weight_dims, "weight_num_matrices": len(mats),
      "ln_gamma_max_ratio": ln_max, "ln_gamma_max_module": ln_max_module,
      "ln_gamma_outlier_dims": sorted({d for s in lns.values() for d in s["dims"]}),
      "attn_sink_head_frac": float(np.mean(heads_sink)) if heads_sink else float("nan"),
      "attn_first_token_mass": _nanmean(heads_first),
      "attn_max_received_mass": float(max(max_recv)) if max_recv else float("nan"),
      "attn_mean_row_sum": _nanmean(heads_rows),
      "attn_sink_positions": sorted(sink_pos, key=lambda j: (-sink_pos[j], j))[:TOP],
      "attn_sink_value_ratio": _nanmean(heads_vratio),
      "attn_num_heads": len(heads_sink),
      # Ties between the kinds (the paper: weight outliers <-> activation outliers share hidden
      # dims; massive activations sit at the tokens that are attention sinks).
      "shared_outlier_dims": sorted(set(act_dims) & set(weight_dims)),
      "act_in_sink_positions": in_sink,
  }
  return {"summary": summary, "activation": act, "weight": mats, "layer_norm": lns,
          "attention": attn, "per_layer": _per_layer(act, mats, attn),
          "thresholds": {"tau_abs": float(tau_abs), "k": float(k), "weight_k": float(weight_k),
                         "sink_threshold": float(sink_threshold)}}


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
