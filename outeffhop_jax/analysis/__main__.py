"""Command line of the analysis package.

  python -m outeffhop_jax.analysis study --preset opt_tiny --out /tmp/study \
      [--workdir_root W] [--variants vanilla,softmax1] [--steps N] [--set train.seed=1 ...]

--variants takes any names the preset's get_config accepts (checked before anything trains).
--seeds K trains every variant with seeds 0..K-1 (default 3 for the CPU presets *_tiny / *_cpu,
1 otherwise) and reports mean ± 95 % t-intervals and paired differences to vanilla.

  python -m outeffhop_jax.analysis study --preset minilm --out /tmp/minilm_study [...]

studies the packaged pretrained encoder instead (no training; options: `experiments.inspect.run.parser`).

  python -m outeffhop_jax.analysis inspect PATH --out /tmp/report [...]

reports the outliers and W8A8 fidelity of any checkpoint folder: Hugging Face BertModel /
BertForMaskedLM / OPTForCausalLM / ViTForImageClassification (config.json + *.safetensors) or a
training workdir (`experiments.inspect.checkpoint`); `study --preset minilm` is `inspect` on the
packaged all-MiniLM-L6-v2.

  python -m outeffhop_jax.analysis repair --out /tmp/repair [--preset default|full|gpu] [...]

fine-tunes it to remove its outliers (distillation + attention change / penalty; `experiments.repair.run.parser`).

  python -m outeffhop_jax.analysis horizon WORKDIR_OR_ROOT [...] --out /tmp/trace [--w8a8]

traces the outlier metrics (kurtosis, inf-norm, sink rate, first-token mass) over every kept
checkpoint of training workdirs, mean ± 95 % t-interval over seeds (`experiments.horizon`).

  python -m outeffhop_jax.analysis regrowth --out /tmp/regrowth [--arms vanilla,softmax1,gated] [...]

repairs the packaged MiniLM per attention arm, then trains it on in-batch InfoNCE without penalty or distillation
over seeds and measures whether the outliers come back (resumable; `experiments.regrowth.run.parser`).
"""
from __future__ import annotations

import argparse
import sys


def _parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog="python -m outeffhop_jax.analysis")
  sub = p.add_subparsers(dest="command", required=True)
  s = sub.add_parser("study", help="train/reuse a preset's variants; outlier + W8A8 tables, plots")
  s.add_argument("--preset", required=True, help="a configs/<preset>.py file, e.g. opt_tiny")
  s.add_argument("--out", required=True, help="output folder (results.json, results.md, *.png)")
  s.add_argument("--workdir_root", default=None, help="run folders (default: OUT/runs)")
  s.add_argument("--variants", default=None,
                 help="comma-separated config variants of the preset (default: StudyOptions')")
  s.add_argument("--steps", type=int, default=None, help="override config.train.num_steps")
  s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                 help="config override passed to train.py as --config.KEY=VALUE (repeatable)")
  s.add_argument("--eval_batches", type=int, default=None)
  s.add_argument("--calib_subsets", type=int, default=3)
  s.add_argument("--calib_batches", type=int, default=None, help="default: BERT 16, OPT/ViT 4")
  s.add_argument("--settings", default="W8A8,W6A8,W4A8,W6A6")
  s.add_argument("--percentile", type=float, default=None,
                 help="activation ranges from this percentile (e.g. 99.999) instead of min-max")
  s.add_argument("--qwix", action="store_true",
                 help="also the labelled qwix protocol (per-channel weights, per-tensor static "
                      "activations on linear-layer inputs); needs `pip install qwix`")
  s.add_argument("--massive", default=None, metavar="TAU_ABS,K",
                 help="massive-activation criterion |x| > max(TAU_ABS, K * median |x|) "
                      "(default 100,1000: Sun et al. 2024)")
  s.add_argument("--seeds", type=int, default=None, metavar="K",
                 help="train each variant with seeds 0..K-1 (train.seed = data.shuffle_seed = k, "
                      "paired by seed); results.md gets mean ± 95 %% t-intervals and paired "
                      "differences to vanilla (default: 3 for CPU presets *_tiny / *_cpu, else 1)")
  s.add_argument("--no_plots", action="store_true")
  i = sub.add_parser("inspect", help="outlier + W8A8 report of a checkpoint folder (Hugging Face "
                                     "BERT / OPT / ViT, or a workdir of ours)")
  i.add_argument("path", help="config.json + *.safetensors (Hugging Face), or a training workdir")
  i.add_argument("--out", required=True, help="output folder (report.json, report.md, *.png)")
  i.add_argument("--seq_len", type=int, default=64, help="tokens per row (text models)")
  i.add_argument("--num_rows", type=int, default=64, help="evaluation rows (Hugging Face models)")
  i.add_argument("--batch_size", type=int, default=16)
  i.add_argument("--eval_batches", type=int, default=4, help="evaluation batches (workdirs)")
  i.add_argument("--calib_subsets", type=int, default=3)
  i.add_argument("--calib_batches", type=int, default=4)
  i.add_argument("--settings", default="W8A8,W6A8,W4A8")
  i.add_argument("--percentile", type=float, default=None)
  i.add_argument("--top_dims", type=int, default=3, help="dominant dims whose carriers to report")
  i.add_argument("--no_ablation", action="store_true")
  i.add_argument("--no_plots", action="store_true")
  i.add_argument("--no_sentence", action="store_true",
                 help="skip the sentence-encoder study (results.*) of a BertModel + tokenizer.json")
  sub.add_parser("horizon", add_help=False,
                 help="outlier metrics over every kept checkpoint of training workdirs (see horizon --help)")
  sub.add_parser("repair", add_help=False,
                 help="outlier repair of the packaged MiniLM by distillation (see repair --help)")
  sub.add_parser("regrowth", add_help=False,
                 help="do repaired outliers come back under contrastive training? (regrowth --help)")
  return p


def main(argv=None, log=None) -> int:
  """Runs the command of argv; `log` (default: print, flushed) receives the progress lines."""
  argv = sys.argv[1:] if argv is None else list(argv)
  if _encoder_preset(argv):
    from outeffhop_jax.analysis.experiments.inspect import run as encoder_study

    return encoder_study.main(argv[1:], log=log or (lambda m: print(m, flush=True)))
  if argv and argv[0] == "repair":
    from outeffhop_jax.analysis.experiments.repair import run as repair

    return repair.main(argv[1:], log=log)
  if argv and argv[0] == "horizon":
    from outeffhop_jax.analysis.experiments import horizon

    return horizon.main(argv[1:], log=log or (lambda m: print(m, flush=True)))
  if argv and argv[0] == "regrowth":
    from outeffhop_jax.analysis.experiments.regrowth import run as regrowth

    return regrowth.main(argv[1:], log=log)
  args = _parser().parse_args(argv)
  if args.command == "inspect":
    return _inspect(args, log or (lambda m: print(m, flush=True)))
  from outeffhop_jax.analysis.experiments.study import run as study
  from outeffhop_jax.analysis.quant import w8a8

  variants = (study.StudyOptions.variants if args.variants is None
              else tuple(v for v in args.variants.split(",") if v))
  if not variants:
    raise SystemExit("--variants: no variant given")
  settings = tuple(s for s in args.settings.split(",") if s)
  unknown = [s for s in settings if s not in w8a8.SETTINGS]
  if unknown:
    raise SystemExit(f"--settings: unknown {unknown}; choose from {sorted(w8a8.SETTINGS)}")
  for o in args.set:
    if "=" not in o:
      raise SystemExit(f"--set expects KEY=VALUE, got {o!r}")
  opts = study.StudyOptions(
      preset=args.preset, out=args.out, workdir_root=args.workdir_root, variants=variants,
      steps=args.steps, overrides=tuple(args.set), eval_batches=args.eval_batches,
      calib_subsets=args.calib_subsets, calib_batches=args.calib_batches, settings=settings,
      percentile=args.percentile, qwix=args.qwix, plots=not args.no_plots,
      seeds=default_seeds(args.preset) if args.seeds is None else args.seeds,
      **({} if args.massive is None else {"massive": _pair(args.massive, "--massive")}))
  try:
    study.check_seeds(opts)
  except ValueError as e:
    raise SystemExit(f"--seeds: {e}") from e
  for v in variants:  # an unknown variant fails here, before hours of training the others
    try:
      study.load_config(opts, v)
    except (ValueError, KeyError) as e:
      raise SystemExit(f"preset {args.preset!r}, variant {v!r}: {e}") from e
  study.run_study(opts, log=log or (lambda m: print(m, flush=True)))
  return 0


def _inspect(args, log) -> int:
  from outeffhop_jax.analysis.experiments.inspect import checkpoint
  from outeffhop_jax.analysis.experiments.inspect import run as encoder_study
  from outeffhop_jax.analysis.quant import w8a8

  settings = tuple(s for s in args.settings.split(",") if s)
  unknown = [s for s in settings if s not in w8a8.SETTINGS]
  if unknown:
    raise SystemExit(f"--settings: unknown {unknown}; choose from {sorted(w8a8.SETTINGS)}")
  try:
    checkpoint.check_folder(args.path)  # what is missing, before anything loads
  except (FileNotFoundError, ValueError) as e:
    raise SystemExit(str(e)) from e
  opts = checkpoint.InspectOptions(
      path=args.path, out=args.out, seq_len=args.seq_len, num_rows=args.num_rows,
      batch_size=args.batch_size, eval_batches=args.eval_batches,
      calib_subsets=args.calib_subsets, calib_batches=args.calib_batches, settings=settings,
      percentile=args.percentile, ablation=not args.no_ablation, top_dims=args.top_dims,
      plots=not args.no_plots)
  checkpoint.run(opts, log=log)
  if not args.no_sentence and encoder_study.is_sentence_encoder(args.path):
    log("sentence encoder (BertModel + tokenizer.json): embedding fidelity and retrieval study")
    encoder_study.run(encoder_study.EncoderStudyOptions(
        out=args.out, checkpoint=args.path, calib_subsets=args.calib_subsets, settings=settings,
        percentile=args.percentile, ablation=not args.no_ablation, plots=not args.no_plots),
        log=log)
  return 0


def default_seeds(preset: str) -> int:
  """Seeds of a study when --seeds is not given: 3 for the CPU presets (*_tiny, *_cpu), else 1
  (a GPU/TPU preset's run is hours; ask for its seeds explicitly)."""
  return 3 if preset.endswith(("_tiny", "_cpu")) else 1


def _encoder_preset(argv) -> bool:
  """Whether argv is `study --preset P ...` with P a pretrained encoder (`experiments.inspect.run.PRESETS`)."""
  from outeffhop_jax.analysis.experiments.inspect.run import PRESETS

  if not argv or argv[0] != "study":
    return False
  for i, a in enumerate(argv):
    if a == "--preset" and i + 1 < len(argv):
      return argv[i + 1] in PRESETS
    if a.startswith("--preset="):
      return a.split("=", 1)[1] in PRESETS
  return False


def _pair(text: str, flag: str) -> tuple[float, float]:
  try:
    a, b = (float(x) for x in text.split(","))
  except ValueError as e:
    raise SystemExit(f"{flag} expects two numbers A,B, got {text!r}") from e
  return a, b


if __name__ == "__main__":
  sys.exit(main())
