"""The study command end to end on a tiny preset (two variants, a few steps), then reused."""
import json
import os

import pytest

from outeffhop_jax.analysis import __main__ as cli
from outeffhop_jax.analysis.quant import qwix_w8a8

FILES = ("results.json", "results.md", "per_layer.png", "dim_max.png", "histograms.png",
         "attention_vanilla.png", "attention_softmax1.png", "attention_maps.npz",
         "outlier_kinds.png")


def test_study_writes_every_output(small_study):
  out, root, lines = small_study
  for name in FILES:
    assert os.path.getsize(os.path.join(out, name)) > 0, name
  with open(os.path.join(out, "results.json")) as f:
    study = json.load(f)
  assert set(study["results"]) == {"vanilla", "softmax1"}
  for v, r in study["results"].items():
    assert r["step"] == 300 and r["variant"] == v
    assert r["normalizer"] == ("softmax" if v == "vanilla" else "softmax1")
    assert set(r["quantized"]) == {"W8A8"}  # the fixture's --settings
    assert len(r["quantized"]["W8A8"]["values"]) == 3
    s = r["outliers"]["summary"]
    assert s["avg_kurtosis"] > 0 and s["max_inf_norm"] > 0 and 0 <= s["sink_rate"] <= 1
    assert r["fp"]["perplexity"] < 60  # it did train (byte vocabulary: ~260 at init)
    k = r["outlier_kinds"]["summary"]  # the three kinds of the Systematic Outliers taxonomy
    assert k["weight_num_matrices"] == 12 and k["attn_num_heads"] == 8 and k["weight_max_ratio"] > 1
    assert 0 <= k["attn_sink_head_frac"] <= 1 and k["act_max_ratio"] > 1
    assert (abs(k["attn_mean_row_sum"] - 1) < 1e-4) == (v == "vanilla")  # softmax1 rows sum below 1
  md = open(os.path.join(out, "results.md")).read()
  assert "| Vanilla |" in md and "W8A8" in md and "Avg kurtosis" in md
  assert "## Outlier kinds (Systematic Outliers taxonomy)" in md
  assert sum("training" in m for m in lines) == 2


def test_study_reuses_finished_runs_and_runs_qwix(small_study, study_argv, tmp_path):
  """A second study on the same runs trains nothing; with qwix installed it adds the labelled
  qwix protocol (per-channel weights, per-tensor static activations on linear inputs)."""
  _, root, _ = small_study
  lines = []
  use_qwix = qwix_w8a8.available()
  argv = study_argv(tmp_path / "again", root, variants="softmax1") + [
      "--no_plots", "--settings", "W8A8", "--calib_subsets", "2"] + (["--qwix"] if use_qwix else [])
  assert cli.main(argv, log=lines.append) == 0
  assert any("reusing" in m for m in lines) and not any("training" in m for m in lines)
  md = open(tmp_path / "again" / "results.md").read()
  with open(tmp_path / "again" / "results.json") as f:
    r = json.load(f)["results"]["softmax1"]
  if use_qwix:
    q = r["quantized"]["qwix-W8A8"]
    assert len(q["values"]) == 2 and "qwix-W8A8" in md
    assert abs(q["loss_mean"] - r["fp"]["loss"]) < 0.05


def test_study_on_stanhop_reports_mse_and_quantizes(tmp_path):
  """The Table 1 STanHop-Net row comes from the same command: MSE as the FP metric."""
  out, root = tmp_path / "out", tmp_path / "runs"
  argv = ["study", "--preset", "stanhop_tiny", "--out", str(out), "--workdir_root", str(root),
          "--variants", "softmax1", "--steps", "20", "--settings", "W8A8", "--calib_batches", "2",
          "--calib_subsets", "1",
          "--no_plots", "--seeds", "1",
          # One encoder scale and no mid-run eval: the same code paths, a quarter less compiling.
          "--set", "model.num_layers=1", "--set", "train.eval_every=0"]
  assert cli.main(argv, log=lambda _: None) == 0
  with open(os.path.join(out, "results.json")) as f:
    r = json.load(f)["results"]["softmax1"]
  assert r["family"] == "stanhop" and r["step"] == 20
  assert 0 < r["fp"]["mse"] < 10 and r["fp"]["mae"] > 0
  w8 = r["quantized"]["W8A8"]
  assert len(w8["values"]) == 1 and all(0 < v < 10 for v in w8["values"])
  assert r["outliers"]["summary"]["num_modules"] > 0
  assert r["outlier_kinds"]["summary"]["attn_num_heads"] > 0  # GSH maps, series folded into heads
  assert "| FP MSE |" in open(os.path.join(out, "results.md")).read()


def test_unknown_variant_fails_before_anything_trains(tmp_path):
  """--variants takes any name the preset's config accepts, and is checked up front."""
  with pytest.raises(SystemExit, match="nonsense"):
    cli.main(["study", "--preset", "opt_tiny", "--out", str(tmp_path / "o"),
              "--variants", "vanilla,nonsense"], log=lambda _: None)
  assert not (tmp_path / "o").exists()


def test_study_with_two_seeds_reports_intervals_and_paired_differences(small_study, study_argv,
                                                                        tmp_path):
  """--seeds 2: seed 0 reuses the single-seed runs (trained with seed 0), seed 1 trains into
  *_seed1; results.json keeps both seeds, results.md the t-interval and paired difference,
  recomputed here from the per-seed values with scipy."""
  import numpy as np
  from scipy import stats as sps

  _, root, _ = small_study
  out, lines = tmp_path / "seeds", []
  argv = study_argv(out, root)
  argv[argv.index("--seeds") + 1] = "2"
  argv[argv.index("--calib_subsets") + 1] = "1"
  argv += ["--settings", "W8A8", "--eval_batches", "1"]
  assert cli.main(argv, log=lines.append) == 0
  assert sum("reusing" in m for m in lines) == 2 and sum("training" in m for m in lines) == 2
  assert os.path.isdir(os.path.join(root, "opt_tiny_softmax1_seed1", "checkpoints"))
  with open(out / "results.json") as f:
    study = json.load(f)
  assert study["seeds"] == [0, 1]
  for v in ("vanilla", "softmax1"):
    assert [r["seed"] for r in study["per_seed"][v]] == [0, 1]
    cfg = json.load(open(os.path.join(study["per_seed"][v][1]["workdir"], "config.json")))
    assert cfg["train"]["seed"] == 1 and cfg["data"]["shuffle_seed"] == 1
  kv = [r["outliers"]["summary"]["avg_kurtosis"] for r in study["per_seed"]["vanilla"]]
  ks = [r["outliers"]["summary"]["avg_kurtosis"] for r in study["per_seed"]["softmax1"]]
  assert kv[0] != kv[1]  # a different seed is a different run

  def interval(x):
    x = np.asarray(x, np.float64)
    return x.mean(), sps.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x))

  md = (out / "results.md").read_text()
  m, h = interval(kv)
  assert f"{m:.2f} ± {h:.2f}" in md
  d, hd = interval(np.subtract(ks, kv))
  cell = f"{d:+.2f} ± {hd:.2f}" + (" *" if abs(d) > hd else "")
  assert "## Paired difference to Vanilla" in md
  paired = md.split("## Paired difference to Vanilla")[1]
  row = next(line for line in paired.splitlines() if line.startswith("| OutEffHop (softmax1) |"))
  assert cell in row
  w8 = [[r["quantized"]["W8A8"]["mean"] - r["fp"]["perplexity"] for r in study["per_seed"][v]]
        for v in ("vanilla", "softmax1")]
  d, hd = interval(np.subtract(w8[1], w8[0]))
  assert f"{d:+.3f} ± {hd:.3f}" in row
  assert os.path.getsize(out / "seeds.png") > 0 and os.path.getsize(out / "per_layer.png") > 0


def test_seed_options_are_checked_before_anything_trains(tmp_path):
  """--seeds sets train.seed / data.shuffle_seed, so a --set of them clashes; a reused workdir
  trained with another seed is refused."""
  from outeffhop_jax.analysis.experiments.study import run as study

  base = ["study", "--preset", "opt_tiny", "--out", str(tmp_path / "o"), "--variants", "vanilla"]
  with pytest.raises(SystemExit, match="train.seed=1"):
    cli.main(base + ["--seeds", "2", "--set", "train.seed=1"], log=lambda _: None)
  with pytest.raises(SystemExit, match=">= 1"):
    cli.main(base + ["--seeds", "0"], log=lambda _: None)
  assert not (tmp_path / "o").exists()
  opts = study.StudyOptions(preset="opt_tiny", out=str(tmp_path / "o"), seeds=2)
  wd = tmp_path / "o" / "runs" / "opt_tiny_vanilla_seed1"
  wd.mkdir(parents=True)
  (wd / "config.json").write_text(json.dumps({"train": {"seed": 0}, "data": {"shuffle_seed": 0}}))
  assert study.workdir_of(opts, "vanilla", 1) == str(wd)
  with pytest.raises(ValueError, match="not seed 1"):
    study.train_variant(opts, "vanilla", log=lambda _: None, seed=1)


def test_a_run_longer_than_steps_is_not_reused_as_this_one(tmp_path):
  """A workdir trained past --steps would be analysed at its last step under the shorter label."""
  from outeffhop_jax.analysis.experiments.study import run as study

  opts = study.StudyOptions(preset="opt_tiny", out=str(tmp_path / "o"), steps=300)
  (tmp_path / "o" / "runs" / "opt_tiny_vanilla" / "checkpoints" / "400").mkdir(parents=True)
  with pytest.raises(ValueError, match="trained to step 400, beyond the 300 steps"):
    study.train_variant(opts, "vanilla", log=lambda _: None)


def test_seed_stats_and_report_from_hand_values():
  """Three seeds of hand-written results: t-interval and paired difference against numbers
  computed here (t(0.975, 2) = 4.302653), and the * where the interval excludes 0."""
  from outeffhop_jax.analysis.experiments.study import report, seeds

  def res(v, kurt, ppl):
    return {"family": "opt", "fp": {"perplexity": ppl}, "outliers": {"summary": {
        "avg_kurtosis": kurt, "max_inf_norm": 1.0, "sink_rate": 0.0}},
        "quantized": {"W8A8": {"mean": ppl + 1.0}}}
  per_seed = {"vanilla": [res("vanilla", k, p) for k, p in ((10, 20), (12, 21), (14, 25))],
              "softmax1": [res("softmax1", k, p) for k, p in ((8, 22), (9, 20), (11, 26))]}
  s = seeds.seed_stats(per_seed)
  k = s["metrics"]["vanilla"]["avg_kurtosis"]
  assert k["mean"] == pytest.approx(12.0)
  assert k["half_width"] == pytest.approx(4.302653 * 2 / 3**0.5)
  d = s["paired"]["softmax1"]["avg_kurtosis"]  # differences -2, -3, -3
  assert d["mean"] == pytest.approx(-8 / 3)
  assert d["half_width"] == pytest.approx(4.302653 * (1 / 3) ** 0.5 / 3**0.5) and d["excludes_zero"]
  assert not s["paired"]["softmax1"]["fp"]["excludes_zero"]  # +2, -1, +1
  md = report._seeds_section({"seeds": [0, 1, 2], "settings": ["W8A8"], "seed_stats": s}, "ppl")
  row = next(line for line in md if line.startswith("| OutEffHop (softmax1) | -") or
             line.startswith("| OutEffHop (softmax1) | +"))
  assert f"{-8 / 3:+.2f} ± {4.302653 / 3:.2f} *" in row and "+0.667 ± " in row
