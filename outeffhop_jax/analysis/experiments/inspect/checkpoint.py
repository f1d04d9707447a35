"""`inspect`: the outlier and W8A8 report of any checkpoint folder this library imports.

    python -m outeffhop_jax.analysis inspect PATH --out DIR

PATH is either a Hugging Face checkpoint folder (config.json whose "architectures"[0] is
BertModel, BertForMaskedLM, OPTForCausalLM or ViTForImageClassification, plus *.safetensors; read
by `models.hf.from_pretrained`, no torch) or a training workdir of ours (config.json +
checkpoints/<step>; `train.load_from_workdir`). `check_folder` names what is missing before
anything is loaded.

Inputs: for a Hugging Face text model, the embedded CPython documentation passages
(`data.embedded.doc_passages`: "eval" to measure, "train" to calibrate) cut to rows of exactly
`seq_len` tokens (tokenizer.json when the folder has one, else UTF-8 bytes mapped into the
vocabulary after the config's bos/cls token), so no row is padded; for ViT the embedded digits
(`embedded.digits`) scaled to the config's image size; for a workdir its own evaluation batches and
training-stream calibration batches (`study.runs`). The report (`run`): per-layer kurtosis and
inf-norm (`outliers.collect`, the family's outlier modules), the dominant hidden dimensions and
the tokens / positions that carry their massive values (|x| > half the dimension's max), sink
heads (mean attention to token 0 > 0.3), the Systematic-Outliers kinds (`outliers.kinds`), the
kernels worst for per-tensor weights (`outliers.encoder.weight_outliers`), fidelity of each
quantization setting = mean cosine between the quantized and the FP32 model outputs (final hidden
states of BertModel, logits otherwise; one vector per token, or per image), mean ± std over
calibration subsets, and the W8A8 ablation (weights quantized, one activation group at a time).
"""
from __future__ import annotations

import dataclasses
import glob
import json
import os
import time
from typing import Callable

import jax.numpy as jnp
import numpy as np
from flax import nnx

from outeffhop_jax.analysis._io import json_default
from outeffhop_jax.analysis.experiments.inspect.report import (MASSIVE_FRACTION, SINK_THRESHOLD,
                                                               markdown)
from outeffhop_jax.analysis.experiments.inspect.token_ids import ByteIds, TokenizerIds



@dataclasses.dataclass(frozen=True)
class InspectOptions:
  path: str
  out: str
  seq_len: int = 64                 # tokens per row (text models)
  num_rows: int = 64                # evaluation rows (text / images); workdirs: eval_batches
  batch_size: int = 16
  eval_batches: int = 4             # workdirs: evaluation batches of the run
  calib_subsets: int = 3
  calib_batches: int = 4            # batches per calibration subset
  settings: tuple[str, ...] = ("W8A8", "W6A8", "W4A8")
  percentile: float | None = None
  ablation: bool = True
  top_dims: int = 3                 # dominant dimensions whose carriers are reported
  plots: bool = True


@dataclasses.dataclass
class Subject:
  """A loaded checkpoint and its data: model inputs are plain arrays (no padding rows / tokens)."""
  model: nnx.Module
  family: str
  source: str                       # "huggingface" or "workdir"
  architecture: str
  output: str                       # what fidelity compares: "final hidden states" or "logits"
  center: bool                      # fidelity of centred vectors (logits)
  eval_inputs: list                 # [inputs_B...] arrays
  eval_weights: list                # [w_B] row weights (0 = padding row)
  calib: list                       # calib_subsets lists of inputs
  token_name: Callable[[int], str]  # id -> readable token ("patch p" for images)
  data: str                         # one sentence on the inputs
  info: dict


# ---------------------------------------------------------------------------------------------
# Folder checks and loading


def check_folder(path: str) -> tuple[str, dict]:
  """("huggingface" | "workdir", config.json dict) of `path`, or an error naming what is missing."""
  from outeffhop_jax.models import hf

  if not os.path.isdir(path):
    raise FileNotFoundError(f"inspect: {path!r} is not a folder (expected a Hugging Face "
                            "checkpoint folder with config.json + *.safetensors, or a training "
                            "workdir)")
  cfg_path = os.path.join(path, "config.json")
  if not os.path.isfile(cfg_path):
    has = ("*.safetensors" if glob.glob(os.path.join(path, "*.safetensors")) else
           "checkpoints/" if os.path.isdir(os.path.join(path, "checkpoints")) else
           "nothing" if not os.listdir(path) else "other files only")
    raise FileNotFoundError(f"inspect: {path!r} has no config.json (found: {has}); a Hugging Face "
                            "checkpoint folder holds config.json + *.safetensors, a workdir "
                            "config.json + checkpoints/<step>")
  with open(cfg_path) as f:
    try:
      cfg = json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(f"inspect: {cfg_path!r} is not valid JSON: {e}") from None
  if "architectures" in cfg or "model_type" in cfg:
    arch = (cfg.get("architectures") or [None])[0]
    if arch not in hf.ARCHITECTURES:
      raise ValueError(f"inspect: unknown architecture {arch!r} in {cfg_path!r} "
                       f"(config.json 'architectures'); supported: {sorted(hf.ARCHITECTURES)}")
    if not glob.glob(os.path.join(path, "*.safetensors")):
      raise FileNotFoundError(f"inspect: {path!r} has config.json ({arch}) but no *.safetensors "
                              "weights file (save with safe_serialization=True)")
    return "huggingface", cfg
  if "model" in cfg and "train" in cfg:
    ckpts = os.path.join(path, "checkpoints")
    steps = [d for d in os.listdir(ckpts) if d.isdigit()] if os.path.isdir(ckpts) else []
    if not steps:
      raise FileNotFoundError(f"inspect: empty workdir {path!r}: no checkpoints/<step> folder "
                              "(train it first, or point at a finished run)")
    return "workdir", cfg
  raise ValueError(f"inspect: {cfg_path!r} is neither a Hugging Face config (no 'architectures') "
                   "nor a training workdir's (no 'model' and 'train' sections)")


def _batched(x: np.ndarray, batch_size: int) -> list[np.ndarray]:
  return [x[i:i + batch_size] for i in range(0, len(x) - batch_size + 1, batch_size)]


def _hf_subject(opts: InspectOptions, cfg: dict) -> Subject:
  from outeffhop_jax.data import embedded
  from outeffhop_jax.models import hf, packaged

  arch = cfg["architectures"][0]
  family = hf.ARCHITECTURES[arch][0]
  model = hf.from_pretrained(opts.path)
  n_cal = opts.calib_subsets * opts.calib_batches * opts.batch_size
  if family == "vit":
    c = model.config
    def images(split, n):
      x, _ = embedded.digits(split)
      x = x[:n].astype(np.float32) / 127.5 - 1.0  # [N, 8, 8, 1] in [-1, 1]
      rep = -(-c.image_size // x.shape[1])
      x = np.repeat(np.repeat(x, rep, axis=1), rep, axis=2)[:, :c.image_size, :c.image_size]
      return np.repeat(x, c.num_channels, axis=3)
    ev, cal = images("test", opts.num_rows), images("train", n_cal)
    names = lambda i: "[CLS]" if i == 0 else f"patch {i - 1}"  # noqa: E731  (position names)
    data = (f"{len(ev)} embedded digit images (scikit-learn digits, test split) scaled to "
            f"{c.image_size}×{c.image_size}×{c.num_channels}; calibration on the train split")
  else:
    tok_file = os.path.join(opts.path, "tokenizer.json")
    if os.path.isfile(tok_file):
      ids = TokenizerIds(packaged.tokenizer(opts.path))
      how = "the folder's tokenizer.json"
    else:
      start = cfg.get("bos_token_id", cfg.get("cls_token_id"))
      ids = ByteIds(cfg["vocab_size"], start)
      how = (f"UTF-8 bytes (no tokenizer.json): id = 4 + byte mod {cfg['vocab_size'] - 4}"
             + (f", after start token {start}" if start is not None else ""))
    T = min(opts.seq_len, int(getattr(model.config, "max_len", opts.seq_len)))
    ev = ids.rows(embedded.doc_passages("eval"), T)[:opts.num_rows]
    cal = ids.rows(embedded.doc_passages("train"), T)[:n_cal]
    names = ids.name
    data = (f"{len(ev)} rows of {T} tokens cut from the embedded CPython documentation passages "
            f"(eval split; calibration: train split), tokenized by {how}")
  if len(ev) < 1 or len(cal) < opts.calib_subsets * opts.calib_batches * opts.batch_size:
    raise ValueError(f"inspect: too little embedded data for {len(ev)} eval rows / "
                     f"{opts.calib_subsets} × {opts.calib_batches} calibration batches of "
                     f"{opts.batch_size}; lower --seq_len, --batch_size or --calib_batches")
  eval_inputs = _batched(ev, min(opts.batch_size, len(ev)))
  cal_b = _batched(cal, opts.batch_size)
  calib = [cal_b[s * opts.calib_batches:(s + 1) * opts.calib_batches]
           for s in range(opts.calib_subsets)]
  return Subject(model=model, family=family, source="huggingface", architecture=arch,
                 output="final hidden states" if arch == "BertModel" else "logits",
                 center=arch != "BertModel",
                 eval_inputs=eval_inputs, eval_weights=[np.ones(len(x), np.float32)
                                                        for x in eval_inputs],
                 calib=calib, token_name=names, data=data,
                 info={k: cfg.get(k) for k in ("model_type", "hidden_size", "num_hidden_layers",
                                               "num_attention_heads", "vocab_size") if k in cfg})


def _workdir_subject(opts: InspectOptions) -> Subject:
  from outeffhop_jax.analysis.experiments.study import runs

  run = runs.load_run(opts.path)
  evs = runs.eval_set(run, opts.eval_batches)
  calib = [runs.calibration_inputs(run, s, opts.calib_batches) for s in range(opts.calib_subsets)]
  tok = run.tokenizer
  family = run.config.family
  if family == "vit":
    names = lambda i: "[CLS]" if i == 0 else f"patch {i - 1}"  # noqa: E731
  elif tok is not None and hasattr(tok, "decode"):
    names = lambda i: repr(tok.decode([i])) if tok.decode([i]) else f"id {i}"  # noqa: E731
  else:
    names = lambda i: f"id {i}"  # noqa: E731
  return Subject(model=run.model, family=family, source="workdir",
                 architecture=f"{family} workdir",
                 output="forecasts" if family == "stanhop" else "logits",
                 center=family != "stanhop",
                 eval_inputs=[b.inputs for b in evs], eval_weights=[b.weights for b in evs],
                 calib=calib, token_name=names,
                 data=f"{len(evs)} evaluation batches of the run's own data (dataset "
                      f"{run.config.data.get('dataset', '?')!r}, split "
                      f"{run.config.data.get('eval_split', '?')!r}); calibration: its training "
                      "stream",
                 info={"variant": run.config.variant, "step": run.step,
                       "normalizer": run.model_cfg.normalizer})


def load_subject(opts: InspectOptions) -> Subject:
  kind, cfg = check_folder(opts.path)
  return _hf_subject(opts, cfg) if kind == "huggingface" else _workdir_subject(opts)


# ---------------------------------------------------------------------------------------------
# Measurements


def _forward(model, x):
  return model(x)


_jit_forward = nnx.jit(_forward)


def outputs(model: nnx.Module, inputs: list) -> list[np.ndarray]:
  return [np.asarray(_jit_forward(model, jnp.asarray(x)), np.float32) for x in inputs]


def fidelity(outs: list[np.ndarray], refs: list[np.ndarray], weights: list[np.ndarray], *,
             center: bool = False) -> float:
  """Weighted mean over vectors (last axis) of cos(out, ref); row weights w_B broadcast over the
  other axes (tokens). center: subtract each vector's mean first (for logits: softmax ignores a
  common shift, and the shared offset of a vocabulary's logits would push every cosine to 1)."""
  num_, den = 0.0, 0.0
  for o, r, w in zip(outs, refs, weights):
    o, r = o.astype(np.float64), r.astype(np.float64)
    if center:
      o, r = o - o.mean(-1, keepdims=True), r - r.mean(-1, keepdims=True)
    cos = np.sum(o * r, -1) / np.maximum(np.linalg.norm(o, axis=-1) * np.linalg.norm(r, axis=-1),
                                         1e-30)
    wb = np.broadcast_to(np.asarray(w, np.float64).reshape((-1,) + (1,) * (cos.ndim - 1)),
                         cos.shape)
    num_ += float(np.sum(cos * wb))
    den += float(np.sum(wb))
  return num_ / max(den, 1e-30)


def _column(model, x, name: str, dims):
  from outeffhop_jax.nn import capture

  _, acts = capture(model, lambda m: m(x))
  return acts[name][..., jnp.asarray(dims)]


_jit_column = nnx.jit(_column, static_argnums=(2, 3))


def carriers(subject: Subject, top_dims: list[dict], k: int) -> list[dict]:
  """For the first `k` top dimensions: where (token, position) |x_d| > MASSIVE_FRACTION × its max,
  in the module where d peaks, over the evaluation rows."""
  out = []
  for t in top_dims[:k]:
    d, name = int(t["dim"]), t["module"]
    vals, toks, pos = [], [], []
    for x, w in zip(subject.eval_inputs, subject.eval_weights):
      v = np.asarray(_jit_column(subject.model, jnp.asarray(x), name, (d,)))[..., 0]
      if v.ndim != 2:  # not a [B, T] token axis (e.g. pooled): no carriers to name
        break
      keep = np.asarray(w) > 0
      v = v[keep]
      vals.append(v)
      pos.append(np.broadcast_to(np.arange(v.shape[1]), v.shape))
      xi = np.asarray(x)[keep]
      toks.append(xi if xi.shape == v.shape else np.broadcast_to(np.arange(v.shape[1]), v.shape))
    if not vals:
      continue
    v, p, tk = np.concatenate(vals), np.concatenate(pos), np.concatenate(toks)
    a = np.abs(v)
    massive = a > MASSIVE_FRACTION * a.max()
    tid, tc = np.unique(tk[massive], return_counts=True)
    pid, pc = np.unique(p[massive], return_counts=True)
    top_t, top_p = np.argsort(-tc)[:5], np.argsort(-pc)[:5]
    rest = a[~massive]
    out.append({"dim": d, "module": name, "max_abs": float(a.max()),
                "median_abs": float(np.median(a)),
                "median_abs_other": float(np.median(rest)) if rest.size else float("nan"),
                "massive_count": int(massive.sum()), "values": int(a.size),
                "tokens": [{"id": int(tid[i]), "token": subject.token_name(int(tid[i])),
                            "count": int(tc[i])} for i in top_t],
                "positions": [{"position": int(pid[i]), "count": int(pc[i])} for i in top_p]})
  return out


def sink_heads(outl: dict, threshold: float = SINK_THRESHOLD) -> dict:
  """{attention layer: [heads whose mean attention to token 0 exceeds threshold]}."""
  return {n.split(".attn_probs")[0]: [h for h, m in enumerate(v) if m > threshold]
          for n, v in outl.get("sink_first_token", {}).items()}


def quantized_fidelity(subject: Subject, refs, opts: InspectOptions, log=print) -> dict:
  from outeffhop_jax.analysis.quant import w8a8

  res = {}
  for name in opts.settings:
    t = time.perf_counter()
    cfg = dataclasses.replace(w8a8.SETTINGS[name], percentile=opts.percentile)
    template = w8a8.quantize_model(subject.model, subject.family, cfg)
    vals = [fidelity(outputs(w8a8.calibrate(nnx.clone(template), cal), subject.eval_inputs), refs,
                     subject.eval_weights, center=subject.center) for cal in subject.calib]
    res[name] = {"values": vals, "mean": float(np.mean(vals)), "std": float(np.std(vals)),
                 "config": dataclasses.asdict(cfg)}
    log(f"{name}: fidelity {res[name]['mean']:.4f} ± {res[name]['std']:.4f} "
        f"({time.perf_counter() - t:.0f} s)")
  return res


def ablation(subject: Subject, refs, opts: InspectOptions, setting: str = "W8A8",
             log=print) -> dict:
  """Weights per `setting`, one activation group on at a time (calibration subset 0)."""
  from outeffhop_jax.analysis.quant import act_groups, w8a8

  cfg = dataclasses.replace(w8a8.SETTINGS[setting], percentile=opts.percentile)
  q = w8a8.calibrate(w8a8.quantize_model(subject.model, subject.family, cfg), subject.calib[0])
  act_groups.make_switchable(q)
  rows = {}
  for row, active in ([("none", ())] + [(g, (g,)) for g in act_groups.GROUPS if g != "other"]
                      + [("all", None)]):
    on = act_groups.set_groups(q, active)
    n_on = sum(on.values())
    if row not in ("none", "all") and n_on == 0:
      continue
    rows[row] = {"fidelity": fidelity(outputs(q, subject.eval_inputs), refs, subject.eval_weights,
                                      center=subject.center),
                 "quantizers": n_on}
    log(f"ablation {row:>12}: fidelity {rows[row]['fidelity']:.4f} ({n_on} quantizers)")
  ranking = sorted((g for g in rows if g not in ("none", "all")), key=lambda g: rows[g]["fidelity"])
  return {"setting": setting, "weight_bits": cfg.weight_bits, "subset": 0, "rows": rows,
          "ranking": ranking}


def run(opts: InspectOptions, log=print) -> dict:
  """Loads opts.path, measures it, writes opts.out/report.json, report.md and the plots."""
  from outeffhop_jax.analysis.outliers import collect, encoder
  from outeffhop_jax.analysis.outliers import kinds as outlier_kinds
  from outeffhop_jax.analysis.quant import w8a8

  unknown = [s for s in opts.settings if s not in w8a8.SETTINGS]
  if unknown:
    raise ValueError(f"settings: unknown {unknown}; choose from {sorted(w8a8.SETTINGS)}")
  t0 = time.perf_counter()
  subject = load_subject(opts)
  os.makedirs(opts.out, exist_ok=True)
  log(f"[inspect] {opts.path}: {subject.source} {subject.architecture} (family "
      f"{subject.family}); {subject.data}")
  batches = list(zip(subject.eval_inputs, subject.eval_weights))
  outl = collect.collect(subject.model, subject.family, batches)
  maps = outl.pop("maps")
  kinds = outlier_kinds.collect_kinds(subject.model, subject.family, batches)
  s = outl["summary"]
  log(f"[inspect] avg kurtosis {s['avg_kurtosis']:.2f}, max inf-norm {s['max_inf_norm']:.2f}, "
      f"top dims {[t['dim'] for t in outl['top_dims'][:opts.top_dims]]}")
  refs = outputs(subject.model, subject.eval_inputs)
  report = {"path": os.path.abspath(opts.path), "source": subject.source,
            "architecture": subject.architecture, "family": subject.family,
            "output": subject.output, "data": subject.data, "info": subject.info,
            "options": dataclasses.asdict(opts), "outliers": outl,
            "carriers": carriers(subject, outl["top_dims"], opts.top_dims),
            "sink_heads": sink_heads(outl), "outlier_kinds": kinds,
            "weights": encoder.weight_outliers(subject.model),
            "fp32_fidelity": fidelity(refs, refs, subject.eval_weights, center=subject.center),
            "centered": subject.center,
            "quantized": quantized_fidelity(subject, refs, opts, log=log)}
  for c in report["carriers"]:
    log(f"[inspect] dim {c['dim']} ({c['module']}): max |x| {c['max_abs']:.1f}, carried by "
        + ", ".join(f"{t['token']} ({t['count']})" for t in c["tokens"][:3]))
  if opts.ablation and "W8A8" in w8a8.SETTINGS:
    report["ablation"] = ablation(subject, refs, opts, log=lambda m: log(f"[inspect] {m}"))
  if opts.plots:
    from outeffhop_jax.analysis.experiments.inspect import plots as inspect_plots

    report["plots"] = [os.path.basename(p)
                       for p in inspect_plots.write_checkpoint_report(report, maps, opts.out)]
  report["total_seconds"] = time.perf_counter() - t0
  with open(os.path.join(opts.out, "report.json"), "w") as f:
    json.dump(report, f, indent=1, default=json_default)
  with open(os.path.join(opts.out, "report.md"), "w") as f:
    f.write(markdown(report))
  log(f"[inspect] wrote {opts.out}/report.json, report.md and {len(report.get('plots', []))} plots "
      f"in {report['total_seconds']:.0f} s")
  return report
