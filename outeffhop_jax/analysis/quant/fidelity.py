"""A pretrained sentence encoder under W8A8: embedding fidelity, retrieval, outliers, ablation.

    path = packaged.checkpoint("all-MiniLM-L6-v2")
    enc, tok = hf.from_pretrained(path), packaged.tokenizer(path)
    data = eval_data(tok)                        # offline CPython doc passages (data.embedded)
    teacher = teacher_outputs(enc, data)         # FP32 embeddings: the reference
    r = evaluate(enc, data, teacher=teacher)     # FP32, W8A8 mean +- std over calibration subsets
    a = ablation(enc, data, teacher=teacher)     # W8 weights + one activation group at a time

Metrics on L2-normalised mean-pooled embeddings e [N, D] (`models.sentence`):
    fidelity(e, e_ref) = mean_i <e_i, e_ref_i> / (|e_i| |e_ref_i|)      (cosine; 1 = identical)
    retrieval: query i ranks every document j by cos(q_i, d_j); the true document is j = i;
      recall@1 = mean_i [rank_i = 1],  MRR = mean_i 1 / rank_i  (ties count against the query).
Outliers follow docs/metrics.md over real tokens only (`outliers.encoder.outliers`, re-exported here).
W8A8 is `w8a8.quantize_model` (family "bert"; the encoder has no head) calibrated by running
min-max over training passages' batches, with the activation quantizers optionally restricted to
named groups (`act_groups`).
"""
from __future__ import annotations

import dataclasses
import time
from typing import Callable, Iterable, Sequence

import jax.numpy as jnp
import numpy as np
from flax import nnx

from outeffhop_jax.analysis.quant import act_groups
from outeffhop_jax.analysis.quant import w8a8
from outeffhop_jax.analysis.outliers.encoder import MODULES, PAPER_MODULES, outliers
from outeffhop_jax.data import embedded
from outeffhop_jax.models import sentence

__all__ = ["ABLATION_GROUPS", "MODULES", "PAPER_MODULES", "EvalData", "ablation", "batches",
           "calibrate", "embed", "eval_data", "evaluate", "fidelity", "num_rows", "outliers",
           "quantize", "retrieval", "score", "setting_config", "teacher_outputs"]

Batch = tuple[np.ndarray, np.ndarray]  # (input_ids_BT int32, attention_mask_BT int32)
FAMILY = "bert"
ABLATION_GROUPS = tuple(g for g in act_groups.GROUPS if g != "other")


# ---------------------------------------------------------------------------------------------
# Batching and embedding


def batches(tokenizer, texts: Sequence[str], *, max_len: int = 128, batch_size: int = 32,
            pad_to: int = 32) -> list[Batch]:
  """Tokenized batches of `texts` in order: [(ids_BT int32, mask_BT int32), ...].

  Each batch is right-padded to the longest row rounded up to a multiple of `pad_to` (at most
  max_len), so few sequence lengths (few compilations) occur; the last batch is filled up to
  batch_size with empty rows (pad ids, mask all 0), which `embed` drops and `outliers` weighs 0.
  """
  if not len(texts):
    raise ValueError("batches: no texts")
  out = []
  for start in range(0, len(texts), batch_size):
    ids, mask = tokenizer.encode_batch(list(texts[start:start + batch_size]), max_len=max_len)
    T = min(max_len, -(-ids.shape[1] // pad_to) * pad_to)
    B = batch_size
    full_ids = np.full((B, T), tokenizer.pad_id, np.int32)
    full_mask = np.zeros((B, T), np.int32)
    full_ids[:len(ids), :ids.shape[1]], full_mask[:len(ids), :ids.shape[1]] = ids, mask
    out.append((full_ids, full_mask))
  return out


def num_rows(batch_list: Iterable[Batch]) -> int:
  """Real (non-padding) rows of a batch list = the number of texts it was built from."""
  return int(sum((mask.sum(axis=1) > 0).sum() for _, mask in batch_list))


def _embed(model, ids_BT, mask_BT):
  return sentence.sentence_embeddings(model, ids_BT, mask_BT)


_jit_embed = nnx.jit(_embed)


def embed(model: nnx.Module, batch_list: Iterable[Batch]) -> np.ndarray:
  """L2-normalised mean-pooled sentence embeddings [N, D] float32 of the real rows, in order.

  model: a BERT-style encoder returning h_BTD (e.g. `models.BERTEncoder`, or its `quantize` copy).
  """
  out = []
  for ids, mask in batch_list:
    e = np.asarray(_jit_embed(model, jnp.asarray(ids), jnp.asarray(mask)), np.float32)
    out.append(e[mask.sum(axis=1) > 0])
  if not out:
    raise ValueError("embed: no batches")
  return np.concatenate(out)


# ---------------------------------------------------------------------------------------------
# Metrics


def _unit(e):
  e = np.asarray(e, np.float64)
  return e / np.maximum(np.linalg.norm(e, axis=-1, keepdims=True), 1e-12)


def fidelity(e_BD, e_ref_BD) -> float:
  """Mean cosine similarity of paired rows of e_BD and e_ref_BD ([N, D] each)."""
  if np.shape(e_BD) != np.shape(e_ref_BD):
    raise ValueError(f"fidelity: shapes differ: {np.shape(e_BD)} vs {np.shape(e_ref_BD)}")
  return float(np.mean(np.sum(_unit(e_BD) * _unit(e_ref_BD), axis=-1)))


def retrieval(q_emb, d_emb) -> dict:
  """Cosine ranking of all documents for each query (true document i for query i).

  Returns {"recall@1": fraction whose true document ranks first, "mrr": mean 1 / rank} with
  rank = 1 + the number of other documents scoring >= the true one (ties are not lucky).
  """
  if np.shape(q_emb) != np.shape(d_emb):
    raise ValueError(f"retrieval: needs as many queries as documents, got {np.shape(q_emb)} vs "
                     f"{np.shape(d_emb)}")
  s = _unit(q_emb) @ _unit(d_emb).T
  true = np.diag(s)
  rank = np.sum(s >= true[:, None], axis=1)  # the true document itself counts once
  return {"recall@1": float(np.mean(rank == 1)), "mrr": float(np.mean(1.0 / rank))}


# ---------------------------------------------------------------------------------------------
# W8A8


def _encode(model, ids_BT, mask_BT):
  return model(ids_BT, attention_mask=mask_BT)


_jit_encode = nnx.jit(_encode)


def setting_config(setting, percentile: float | None = None) -> w8a8.QuantConfig:
  """A `w8a8.SETTINGS` name ("W8A8", "W6A8", ...) or a QuantConfig, with `percentile` applied."""
  if isinstance(setting, w8a8.QuantConfig):
    cfg = setting
  elif setting in w8a8.SETTINGS:
    cfg = w8a8.SETTINGS[setting]
  else:
    raise ValueError(f"unknown setting {setting!r}; choose from {sorted(w8a8.SETTINGS)} or pass a "
                     "w8a8.QuantConfig")
  return cfg if percentile is None else dataclasses.replace(cfg, percentile=percentile)


def calibrate(qmodel: nnx.Module, calib_batch_list: Sequence[Batch], *,
              groups: Iterable[str] | None = None) -> nnx.Module:
  """Calibrates every activation quantizer of `qmodel` on (ids, mask) batches (the encoder reads
  the mask), then switches on those of `groups` (None = all; `act_groups`). Returns qmodel."""
  if not len(calib_batch_list):
    raise ValueError("calibrate: no calibration batches")
  w8a8.set_mode(qmodel, "calibrate")
  for ids, mask in calib_batch_list:
    _jit_encode(qmodel, jnp.asarray(ids), jnp.asarray(mask))
  act_groups.set_groups(qmodel, groups)
  return qmodel


def quantize(model: nnx.Module, calib_batch_list: Sequence[Batch], *, setting="W8A8",
             groups: Iterable[str] | None = None, percentile: float | None = None) -> nnx.Module:
  """A calibrated fake-quantized copy of `model` (the docs/w8a8.md protocol, family "bert").

  setting: a `w8a8.SETTINGS` name or a QuantConfig; weights are quantized per it whatever `groups`.
  groups: activation-quantizer groups left on (`act_groups.GROUPS`: "embeddings", "qkv", "scores",
    "attn_probs", "context", "attn_output", "ffn_hidden", "ffn_output", "residual", "layernorm",
    "other"); None = all (the full protocol), () = weights only. Every quantizer is calibrated
    (in float pass-through) whatever the groups, so a group's ranges do not depend on the others.
  percentile: activation ranges from this percentile instead of min-max.
  """
  groups = act_groups.check_groups(groups)
  q = w8a8.quantize_model(model, FAMILY, setting_config(setting, percentile))
  return calibrate(q, calib_batch_list, groups=groups)


# ---------------------------------------------------------------------------------------------
# Evaluation data and the evaluation protocol


@dataclasses.dataclass
class EvalData:
  """Tokenized evaluation and calibration sets (built by `eval_data`).

  passages: eval passages (fidelity, outliers); queries / docs: retrieval pairs cut from eval
  passages (pair i belongs together); calib: `calib_subsets` disjoint lists of calibration batches
  of TRAIN passages. *_texts hold the texts in batch order (for the repair fine-tuning).
  """
  passages: list[Batch]
  queries: list[Batch]
  docs: list[Batch]
  calib: list[list[Batch]]
  passage_texts: list[str]
  query_texts: list[str]
  doc_texts: list[str]
  max_len: int
  batch_size: int


def _by_length(tokenizer, texts: list[str], max_len: int) -> np.ndarray:
  n = np.array([min(max_len, len(tokenizer.encode(t)) + 2) for t in texts])
  return np.argsort(n, kind="stable")


def eval_data(tokenizer, *, n_pairs: int = 300, n_passages: int | None = None, max_len: int = 128,
              batch_size: int = 32, calib_batches: int = 16, calib_batch_size: int = 8,
              calib_subsets: int = 3, seed: int = 0) -> EvalData:
  """The evaluation set of `doc_passages("eval")` and calibration sets of `doc_passages("train")`.

  n_passages: eval passages for fidelity/outliers (None = all, 386 on CPython 3.11; else an even
  spread over them). n_pairs: retrieval pairs (`retrieval_pairs`, same eval passages). Texts are
  ordered by token length (fidelity and retrieval do not depend on order) so that batches pad
  little. Calibration: `calib_subsets` disjoint subsets of `calib_batches` full batches of
  `calib_batch_size` train passages each, drawn by `seed` (docs/w8a8.md: BERT 16 batches).
  """
  ev = embedded.doc_passages("eval")
  if n_passages is not None and n_passages < len(ev):
    ev_sel = [ev[i] for i in np.linspace(0, len(ev) - 1, n_passages).round().astype(int)]
  else:
    ev_sel = ev
  passages = [ev_sel[i] for i in _by_length(tokenizer, ev_sel, max_len)]
  queries, docs = embedded.retrieval_pairs(ev, n=n_pairs, seed=seed)
  order = _by_length(tokenizer, docs, max_len)
  queries, docs = [queries[i] for i in order], [docs[i] for i in order]
  train = embedded.doc_passages("train")
  need = calib_subsets * calib_batches * calib_batch_size
  if need > len(train):
    raise ValueError(f"eval_data: {need} calibration passages requested, {len(train)} available")
  pick = np.random.default_rng(seed).permutation(len(train))[:need]
  calib = []
  for s in range(calib_subsets):
    texts = [train[i] for i in pick[s * calib_batches * calib_batch_size:
                                    (s + 1) * calib_batches * calib_batch_size]]
    calib.append(batches(tokenizer, texts, max_len=max_len, batch_size=calib_batch_size))
  kw = dict(max_len=max_len, batch_size=batch_size)
  return EvalData(passages=batches(tokenizer, passages, **kw),
                  queries=batches(tokenizer, queries, **kw), docs=batches(tokenizer, docs, **kw),
                  calib=calib, passage_texts=passages, query_texts=queries, doc_texts=docs,
                  max_len=max_len, batch_size=batch_size)


def teacher_outputs(teacher_model: nnx.Module, data: EvalData) -> dict:
  """The FP32 reference: {"passages", "queries", "docs": embeddings [N, D]} and its retrieval."""
  out = {k: embed(teacher_model, getattr(data, k)) for k in ("passages", "queries", "docs")}
  out["retrieval"] = retrieval(out["queries"], out["docs"])
  return out


def score(model: nnx.Module, data: EvalData, teacher: dict) -> dict:
  """{"fidelity" (eval passages vs teacher), "fidelity_pairs" (queries and docs), "recall@1",
  "mrr"} of one model."""
  e = {k: embed(model, getattr(data, k)) for k in ("passages", "queries", "docs")}
  pairs = np.concatenate([e["queries"], e["docs"]])
  ref = np.concatenate([teacher["queries"], teacher["docs"]])
  return {"fidelity": fidelity(e["passages"], teacher["passages"]),
          "fidelity_pairs": fidelity(pairs, ref), **retrieval(e["queries"], e["docs"])}


def _spread(scores: list[dict]) -> dict:
  return {k: {"mean": float(np.mean([s[k] for s in scores])),
              "std": float(np.std([s[k] for s in scores])), "values": [s[k] for s in scores]}
          for k in scores[0]}


def evaluate(model: nnx.Module, data: EvalData, *, teacher: dict, calib_subsets: int = 3,
             settings: Sequence = ("W8A8",), percentile: float | None = None,
             with_outliers: bool = True, log: Callable[[str], None] = print) -> dict:
  """FP32 and fake-quantized quality of `model` against the FP32 `teacher` embeddings.

  Returns {"fp32": {fidelity, fidelity_pairs, recall@1, mrr}, "outliers": `outliers` of the eval
  passages (if with_outliers), "quantized": {setting: {metric: {mean, std, values}}}, ...}: each
  setting calibrated on the first `calib_subsets` subsets of data.calib (docs/w8a8.md: mean +- std).
  """
  if not 1 <= calib_subsets <= len(data.calib):
    raise ValueError(f"evaluate: calib_subsets must be in [1, {len(data.calib)}], got "
                     f"{calib_subsets}")
  t0 = time.perf_counter()
  out = {"fp32": score(model, data, teacher), "quantized": {},
         "calibration": {"subsets": calib_subsets, "batches": len(data.calib[0]),
                         "batch_size": int(data.calib[0][0][0].shape[0]), "percentile": percentile}}
  log(f"FP32: fidelity {out['fp32']['fidelity']:.5f}, recall@1 {out['fp32']['recall@1']:.3f}, "
      f"MRR {out['fp32']['mrr']:.3f}")
  if with_outliers:
    out["outliers"] = outliers(model, data.passages)
    s = out["outliers"]["summary"]
    log(f"outliers: avg kurtosis {s['avg_kurtosis']:.1f}, max inf-norm {s['max_inf_norm']:.1f}, "
        f"dominant dim {out['outliers']['dominant']['dim']}, sink rate {s['sink_rate']:.2f}")
  for setting in settings:
    t = time.perf_counter()
    cfg = setting_config(setting, percentile)
    template = w8a8.quantize_model(model, FAMILY, cfg)  # weights quantized once per setting
    scores = [score(calibrate(nnx.clone(template), data.calib[i]), data, teacher)
              for i in range(calib_subsets)]
    name = setting if isinstance(setting, str) else cfg.label
    out["quantized"][name] = {**_spread(scores), "config": dataclasses.asdict(cfg)}
    q = out["quantized"][name]
    log(f"{name}: fidelity {q['fidelity']['mean']:.4f} ± {q['fidelity']['std']:.4f}, recall@1 "
        f"{q['recall@1']['mean']:.3f} ± {q['recall@1']['std']:.3f}, MRR {q['mrr']['mean']:.3f} "
        f"({time.perf_counter() - t:.0f} s)")
  out["seconds"] = time.perf_counter() - t0
  return out


def ablation(model: nnx.Module, data: EvalData, *, teacher: dict,
             groups: Sequence[str] = ABLATION_GROUPS, setting="W8A8", subset: int = 0,
             percentile: float | None = None, log: Callable[[str], None] = print) -> dict:
  """Weights quantized per `setting` and one group of activation quantizers on at a time.

  One calibration (subset `subset` of data.calib; every quantizer calibrated once, in float
  pass-through, so each group's ranges are those of the full protocol) serves every row: "none"
  (weights only), each of `groups`, and "all" (the full protocol on that subset). One subset, not
  the mean over several, for speed: the spread over subsets is in `evaluate`'s table.
  Returns {"setting", "subset", "rows": {row: {fidelity, fidelity_pairs, recall@1, mrr,
  quantizers}}, "ranking": groups from most to least damaging (lowest fidelity first)}.
  """
  groups = act_groups.check_groups(groups)
  t0 = time.perf_counter()
  cfg = setting_config(setting, percentile)
  q = calibrate(w8a8.quantize_model(model, FAMILY, cfg), data.calib[subset])
  act_groups.make_switchable(q)  # switching groups by a traced flag: no recompilation per row
  rows = {}
  for row, active in [("none", ())] + [(g, (g,)) for g in groups] + [("all", None)]:
    on = act_groups.set_groups(q, active)
    n_on = sum(on.values())
    if row not in ("none", "all") and n_on == 0:
      continue  # a group this model does not have (e.g. "other")
    rows[row] = {**score(q, data, teacher), "quantizers": n_on}
    log(f"ablation {row:>12}: fidelity {rows[row]['fidelity']:.4f}, recall@1 "
        f"{rows[row]['recall@1']:.3f}, MRR {rows[row]['mrr']:.3f} ({n_on} quantizers)")
  ranking = sorted((g for g in rows if g not in ("none", "all")), key=lambda g: rows[g]["fidelity"])
  return {"setting": setting if isinstance(setting, str) else cfg.label,
          "weight_bits": cfg.weight_bits, "subset": subset, "rows": rows, "ranking": ranking,
          "seconds": time.perf_counter() - t0}
