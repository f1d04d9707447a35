"""The pretrained-encoder study: a real BERT encoder's outliers and what W8A8 does to it.

    python -m outeffhop_jax.analysis study --preset minilm --out /tmp/minilm_study
    # = python -m outeffhop_jax.analysis inspect <packaged all-MiniLM-L6-v2 folder> --out ...

The sentence-encoder part of `inspect` (`checkpoint`): for a BertModel folder with a tokenizer.json
`inspect` writes this study (results.*) beside its generic report (report.*); `study --preset
minilm` is `inspect` on the packaged checkpoint. Imports the checkpoint (default: the packaged
all-MiniLM-L6-v2, no download), builds the offline evaluation set
(`quant.fidelity.eval_data`: CPython doc passages, retrieval pairs, calibration subsets), then
measures the FP32 encoder (fidelity 1 by definition, recall@1 / MRR, outliers of
docs/metrics.md), each fake-quantization setting (mean ± std over calibration subsets,
docs/w8a8.md) and the one-group-at-a-time ablation, and writes OUT/results.json, OUT/results.md and the figures (`plots`).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time

import numpy as np

from outeffhop_jax.analysis._io import write_results
from outeffhop_jax.analysis._format import grouped, mean_std

# Presets this study answers to (the `study --preset` value) -> packaged checkpoint name.
PRESETS = {"minilm": "all-MiniLM-L6-v2", "all-MiniLM-L6-v2": "all-MiniLM-L6-v2"}


@dataclasses.dataclass(frozen=True)
class EncoderStudyOptions:
  out: str
  preset: str = "minilm"
  n_passages: int | None = 128        # eval passages for fidelity / outliers (None: all 386)
  n_pairs: int = 300                  # retrieval query/document pairs
  max_len: int = 128
  batch_size: int = 32
  calib_subsets: int = 3
  calib_batches: int = 16             # docs/w8a8.md (BERT)
  calib_batch_size: int = 8
  settings: tuple[str, ...] = ("W8A8", "W6A8", "W4A8")
  percentile: float | None = None
  ablation: bool = True
  plots: bool = True
  seed: int = 0
  checkpoint: str | None = None       # a BertModel folder (default: the packaged `preset`)


def run(opts: EncoderStudyOptions, log=print) -> dict:
  """Runs the study; writes results.json, results.md and the plots under opts.out."""
  from outeffhop_jax.analysis.quant import fidelity
  from outeffhop_jax.models import hf, packaged

  t0 = time.perf_counter()
  os.makedirs(opts.out, exist_ok=True)
  if opts.checkpoint is None:
    name = PRESETS[opts.preset]
    path = packaged.checkpoint(name)
  else:
    path = opts.checkpoint
    name = os.path.basename(os.path.normpath(path))
  model, tok = hf.from_pretrained(path), packaged.tokenizer(path)
  cfg = model.config
  log(f"[{name}] imported {path}: {cfg.num_layers} layers, d={cfg.d_model}, {cfg.num_heads} heads")
  data = fidelity.eval_data(tok, n_pairs=opts.n_pairs, n_passages=opts.n_passages,
                            max_len=opts.max_len, batch_size=opts.batch_size,
                            calib_batches=opts.calib_batches,
                            calib_batch_size=opts.calib_batch_size,
                            calib_subsets=opts.calib_subsets, seed=opts.seed)
  log(f"[{name}] data: {len(data.passage_texts)} eval passages, {len(data.query_texts)} retrieval "
      f"pairs, {opts.calib_subsets} calibration subsets x {opts.calib_batches} batches x "
      f"{opts.calib_batch_size} train passages (max_len {opts.max_len})")
  teacher = fidelity.teacher_outputs(model, data)
  log(f"[{name}] FP32 embeddings done ({time.perf_counter() - t0:.0f} s); measuring outliers and "
      f"{', '.join(opts.settings)}")
  res = fidelity.evaluate(model, data, teacher=teacher, calib_subsets=opts.calib_subsets,
                          settings=opts.settings, percentile=opts.percentile,
                          log=lambda m: log(f"[{name}] {m}"))
  results = {"model": name, "checkpoint": path, "options": dataclasses.asdict(opts),
             "config": {"num_layers": cfg.num_layers, "d_model": cfg.d_model,
                        "num_heads": cfg.num_heads, "d_ff": cfg.d_ff},
             "data": {"eval_passages": len(data.passage_texts), "pairs": len(data.query_texts),
                      "eval_passages_total": len(fidelity.embedded.doc_passages("eval")),
                      "train_passages_total": len(fidelity.embedded.doc_passages("train"))},
             **res}
  if opts.ablation:
    log(f"[{name}] ablation: W8 weights + one activation group at a time (calibration subset 0)")
    results["ablation"] = fidelity.ablation(model, data, teacher=teacher,
                                            percentile=opts.percentile,
                                            log=lambda m: log(f"[{name}] {m}"))
  v = results["outliers"]["values"]
  v["massive_tokens"] = [[_token(tok, i), c] for i, c in v["massive_token_ids"]]
  results["total_seconds"] = time.perf_counter() - t0
  _write(results, opts)
  log(f"[{name}] wrote {opts.out}/results.json, results.md and {len(results.get('plots', []))} "
      f"plots in {results['total_seconds']:.0f} s")
  return results


def _token(tok, i: int) -> str:
  # decode() drops special tokens, which are exactly the ones that tend to carry massive values.
  inner = getattr(tok, "_tok", None)
  return (inner.id_to_token(i) if inner is not None else None) or tok.decode([i]) or f"id {i}"


def _write(results: dict, opts: EncoderStudyOptions):
  if opts.plots:
    from outeffhop_jax.analysis.experiments.inspect import plots as encoder_plots

    results["plots"] = [os.path.basename(p) for p in encoder_plots.write_all(results, opts.out)]
  write_results(opts.out, results, markdown(results))



def _wlabel(abl: dict) -> str:
  return "W32" if abl.get("weight_bits") is None else f"W{abl['weight_bits']}"


def markdown(r: dict) -> str:
  """results.md: the papers' table layout for one encoder."""
  o, fp, opts = r["outliers"], r["fp32"], r["options"]
  s, sa, dom = o["summary"], o["summary_all"], o["dominant"]
  cal = r["calibration"]
  L = [f"# Pretrained-encoder study: `{r['model']}`", "",
       f"{r['config']['num_layers']} layers, d = {r['config']['d_model']}, "
       f"{r['config']['num_heads']} heads; FP32 import of the packaged checkpoint. Evaluation "
       f"text: {r['data']['eval_passages']} eval passages and {r['data']['pairs']} query/document "
       "pairs of "
       f"CPython documentation (`data.embedded.doc_passages`, {r['data']['eval_passages_total']} "
       f"eval / {r['data']['train_passages_total']} train passages, split by source), max_len "
       f"{opts['max_len']}. Fidelity = mean cosine between the evaluated and the FP32 sentence "
       "embeddings of the eval passages; retrieval ranks all documents by cosine for each query "
       "(its opening words). Quantization: docs/w8a8.md (weights symmetric per tensor, W4: MSE "
       "clipping; activations asymmetric per tensor, running min-max, momentum 0.9), mean ± std "
       f"over {cal['subsets']} calibration subsets of {cal['batches']} batches × "
       f"{cal['batch_size']} train passages.", "",
       "## Embedding quality", "",
       "| Model | Fidelity (cos to FP32) | Recall@1 | MRR | Fidelity on queries + docs |",
       "|---|---|---|---|---|",
       f"| FP32 | {fp['fidelity']:.4f} | {fp['recall@1']:.3f} | {fp['mrr']:.3f} | "
       f"{fp['fidelity_pairs']:.4f} |"]
  abl = r.get("ablation")
  if abl and "none" in abl["rows"]:
    n = abl["rows"]["none"]
    L.append(f"| {_wlabel(abl)} weights only (calibration subset {abl['subset']}) | "
             f"{n['fidelity']:.4f} | {n['recall@1']:.3f} | {n['mrr']:.3f} | "
             f"{n['fidelity_pairs']:.4f} |")
  for name, q in r["quantized"].items():
    L.append(f"| {name} | {mean_std(q['fidelity'])} | {mean_std(q['recall@1'], 3)} | "
             f"{mean_std(q['mrr'], 3)} | "
             f"{mean_std(q['fidelity_pairs'])} |")

  L += ["", "## Outliers (docs/metrics.md, real tokens only)", "",
        "| Module set | Avg kurtosis | Max kurtosis (module) | Max inf-norm (module) | "
        "Dominant dim (FFN-output layers) | Sink rate | >6σ fraction |",
        "|---|---|---|---|---|---|---|"]
  for label, x in (("BERT set: FFN output + its LayerNorm", s),
                   ("+ attention-output LayerNorms", sa)):
    L.append(f"| {label} ({x['num_modules']} modules) | {grouped(x['avg_kurtosis'], 1)} | "
             f"{grouped(x['max_kurtosis'], 1)} ({x['max_kurtosis_module']}) | "
             f"{grouped(x['max_inf_norm'], 1)} ({x['max_inf_norm_module']}) | {dom['dim']} "
             f"({', '.join(map(str, dom['layers']))}) | "
             f"{x['sink_rate']:.2f} | {x['beyond_6sigma']:.1e} |")
  v = o["values"]
  L += ["", f"Dominant dimension **{dom['dim']}**: max |x| {grouped(dom['max_abs'], 1)} "
        f"({grouped(dom['ratio_to_median'], 0)}× the median dimension's max), the argmax of max "
        f"|x| in "
        f"the FFN outputs of layers {', '.join(map(str, dom['layers']))} and in "
        f"{len(dom['modules'])} of {len(o['module_set'])} modules. In `{v['module']}` over "
        f"{v['tokens']} tokens: median |x| {v['median_abs_dim']:.2f}, max {v['max_abs_dim']:.1f}, "
        f"std {v['std_dim']:.2f}, against median |x| {v['median_abs_typical']:.2f}, max "
        f"{v['max_abs_typical']:.2f}, std {v['std_typical']:.3f} for a typical dimension "
        f"({v['typical_dim']}); {100 * v['massive_fraction']:.2f} % of the tokens carry its "
        "massive values (> half its max), mostly "
        + ", ".join(f"`{t}` ({c})" for t, c in v.get("massive_tokens", [])) + ". Sink rate: "
        "fraction of heads whose mean attention to token 0 ([CLS]) exceeds 0.3.", "",
        "| Top dim | Max \\|x\\| | × median | Peak module | Modules ≥ half its max |",
        "|---|---|---|---|---|"]
  for t in o["top_dims"]:
    L.append(f"| {t['dim']} | {grouped(t['max_abs'], 1)} | {grouped(t['ratio_to_median'], 1)} | "
             f"{t['module']} | {', '.join(t['modules_over_half'])} |")

  if o.get("weights"):
    L += ["", "Linear kernels worst for per-tensor weight quantization (max |w| / std; the output "
          "feature holding max |w|; the fraction of weights that 8-bit min-max rounds to 0):", "",
          "| Kernel | max \\|w\\| / std | max \\|w\\| | Output feature | Zeroed at 8 bits |",
          "|---|---|---|---|---|"]
    for w in o["weights"]:
      L.append(f"| {w['kernel']} | {w['ratio']:.0f} | {w['max_abs']:.2f} | {w['out_dim']} | "
               f"{100 * w['zeroed']:.0f} % |")
  L += ["", "## Per module", "", "| Module | Kurtosis | Inf-norm | >6σ fraction | argmax dim |",
        "|---|---|---|---|---|"]
  dm = o["module_dim_max"]
  for name, m in o["modules"].items():
    L.append(f"| {name} | {grouped(m['kurtosis'], 1)} | {grouped(m['inf_norm'], 1)} | "
             f"{m['beyond_6sigma']:.1e} | {int(np.argmax(dm[name]))} |")
  L += ["", "| Layer | Heads with mean attention to [CLS] > 0.3 | Mean attention to [CLS] |",
        "|---|---|---|"]
  for name, heads in o["sink_first_token"].items():
    h = np.asarray(heads)
    L.append(f"| {name.split('.attention')[0]} | {int((h > 0.3).sum())} / {h.size} | "
             f"{h.mean():.3f} |")

  if abl:
    rows = abl["rows"]
    base = rows["none"]["fidelity"]
    L += ["", f"## Ablation: {abl['setting']} (weights {_wlabel(abl)} always), one group "
          "of activation quantizers on at a time", "",
          f"Calibration subset {abl['subset']} (one subset for speed; every quantizer calibrated "
          "once, so each group's ranges are those of the full protocol). Sorted from most to least "
          "damaging; Δ = fidelity change against weights only.", "",
          "| Activations quantized | Quantizers | Fidelity | Δ fidelity | Recall@1 | MRR |",
          "|---|---|---|---|---|---|"]
    for g in ["none"] + abl["ranking"] + ["all"]:
      x = rows[g]
      label = {"none": "none (weights only)", "all": "all (full protocol)"}.get(g, g)
      L.append(f"| {label} | {x['quantizers']} | {x['fidelity']:.4f} | "
               f"{x['fidelity'] - base:+.4f} | {x['recall@1']:.3f} | {x['mrr']:.3f} |")
  if r.get("plots"):
    L += ["", "Figures: " + ", ".join(f"`{p}`" for p in r["plots"])]
  L += ["", f"Total time {r['total_seconds']:.0f} s.", ""]
  return "\n".join(L)


def parser() -> argparse.ArgumentParser:
  d = EncoderStudyOptions(out="")
  p = argparse.ArgumentParser(prog="python -m outeffhop_jax.analysis study --preset minilm")
  p.add_argument("--preset", required=True, choices=sorted(PRESETS))
  p.add_argument("--out", required=True)
  p.add_argument("--n_passages", type=int, default=d.n_passages, help="eval passages (0: all)")
  p.add_argument("--n_pairs", type=int, default=d.n_pairs)
  p.add_argument("--max_len", type=int, default=d.max_len)
  p.add_argument("--batch_size", type=int, default=d.batch_size)
  p.add_argument("--calib_subsets", type=int, default=d.calib_subsets)
  p.add_argument("--calib_batches", type=int, default=d.calib_batches)
  p.add_argument("--calib_batch_size", type=int, default=d.calib_batch_size)
  p.add_argument("--settings", default=",".join(d.settings))
  p.add_argument("--percentile", type=float, default=None)
  p.add_argument("--no_ablation", action="store_true")
  p.add_argument("--no_plots", action="store_true")
  p.add_argument("--seed", type=int, default=d.seed)
  return p


def is_sentence_encoder(path: str) -> bool:
  """A BertModel checkpoint folder with its tokenizer.json (what this study reads)."""
  try:
    with open(os.path.join(path, "config.json")) as f:
      arch = (json.load(f).get("architectures") or [None])[0]
  except (OSError, ValueError):
    return False
  return arch == "BertModel" and os.path.isfile(os.path.join(path, "tokenizer.json"))


def main(argv, log=print) -> int:
  """`study --preset minilm ...` (argv without the "study" word): `inspect` on the packaged
  checkpoint, i.e. this sentence-encoder study (results.*) and the generic report (report.*)."""
  from outeffhop_jax.analysis.experiments.inspect import checkpoint as inspect_lib
  from outeffhop_jax.analysis.quant import w8a8
  from outeffhop_jax.models import packaged

  a = parser().parse_args(argv)
  settings = tuple(x for x in a.settings.split(",") if x)
  unknown = [x for x in settings if x not in w8a8.SETTINGS]
  if unknown:
    raise SystemExit(f"--settings: unknown {unknown}; choose from {sorted(w8a8.SETTINGS)}")
  opts = EncoderStudyOptions(
      out=a.out, preset=a.preset, n_passages=a.n_passages or None, n_pairs=a.n_pairs,
      max_len=a.max_len, batch_size=a.batch_size, calib_subsets=a.calib_subsets,
      calib_batches=a.calib_batches, calib_batch_size=a.calib_batch_size, settings=settings,
      percentile=a.percentile, ablation=not a.no_ablation, plots=not a.no_plots, seed=a.seed)
  path = packaged.checkpoint(PRESETS[a.preset])
  log(f"study --preset {a.preset} = inspect {path} --out {a.out}")
  inspect_lib.run(inspect_lib.InspectOptions(
      path=path, out=a.out, calib_subsets=a.calib_subsets, settings=settings,
      percentile=a.percentile, ablation=not a.no_ablation, plots=not a.no_plots), log=log)
  run(opts, log=log)
  return 0
