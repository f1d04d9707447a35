"""`analysis horizon`: outlier metrics over the kept checkpoints of training workdirs."""
import json
import os

import numpy as np
import pytest
from scipy import stats as sps

from outeffhop_jax.analysis import __main__ as cli
from outeffhop_jax.analysis.experiments import horizon


def test_trace_of_a_trained_run_matches_the_study_and_resumes(small_study, tmp_path):
  """The step-300 point equals what the study measured on the same checkpoint and eval batches
  (two entry points, one model restored twice); a second call measures nothing new; other
  options on the same trace are refused; a folder without workdirs is named."""
  out, root, _ = small_study
  wd = os.path.join(root, "opt_tiny_vanilla")
  trace_dir, lines = tmp_path / "trace", []
  argv = ["horizon", wd, "--out", str(trace_dir), "--eval_batches", "2", "--no_plots"]
  assert cli.main(argv, log=lines.append) == 0
  trace = json.load(open(trace_dir / "trace.json"))
  (rec,) = trace["runs"].values()
  assert rec["variant"] == "vanilla" and rec["seed"] == 0
  assert [p["step"] for p in rec["points"]] == horizon.checkpoint_steps(wd) == [300]
  study = json.load(open(os.path.join(out, "results.json")))["results"]["vanilla"]
  p = rec["points"][0]
  assert p["avg_kurtosis"] == pytest.approx(study["outliers"]["summary"]["avg_kurtosis"], rel=1e-5)
  assert p["sink_rate"] == pytest.approx(study["outliers"]["summary"]["sink_rate"])
  assert p["fp"] == pytest.approx(study["fp"]["perplexity"], rel=1e-5)
  assert len(lines) == 1 and "step 300" in lines[0]
  lines.clear()
  assert cli.main(argv, log=lines.append) == 0
  assert lines == []  # every point was already measured
  with pytest.raises(SystemExit, match="eval_batches"):
    cli.main(argv[:-2] + ["3", "--no_plots"], log=lines.append)
  with pytest.raises(SystemExit, match="neither a training workdir"):
    cli.main(["horizon", str(tmp_path), "--out", str(tmp_path / "t2")], log=lines.append)


def test_markdown_intervals_and_first_sink_step_over_seeds():
  """Per step, mean ± t-interval over the seeds measured there (recomputed with scipy), and each
  seed's first step with a sink head."""
  def pt(step, k, sink):
    return {"step": step, "fp": 10.0 + k, "avg_kurtosis": 3.0 + k, "max_inf_norm": 5.0 * k + step,
            "sink_rate": sink, "first_token_mass": 0.1 * k}

  trace = {"settings": {"eval_batches": 1, "w8a8": False}, "runs": {
      "a": {"variant": "vanilla", "seed": 0, "points": [pt(1, 1.0, 0.0), pt(2, 1.0, 0.25)]},
      "b": {"variant": "vanilla", "seed": 1, "points": [pt(1, 2.0, 0.0), pt(2, 2.0, 0.0)]},
      "c": {"variant": "vanilla", "seed": 2, "points": [pt(1, 4.0, 0.5)]}}}
  md = horizon.markdown(trace)
  k = np.array([1.0, 2.0, 4.0])
  half = sps.t.ppf(0.975, 2) * np.std(3.0 + k, ddof=1) / np.sqrt(3)
  row1 = next(line for line in md.splitlines() if line.startswith("| 1 |"))
  assert f"{np.mean(3.0 + k):.3f} ± {half:.3f}" in row1 and row1.endswith("| 3 |")
  row2 = next(line for line in md.splitlines() if line.startswith("| 2 |"))
  assert row2.endswith("| 2 |")  # seed 2 has no step-2 checkpoint yet
  assert "seed 0: 2, seed 1: none yet, seed 2: 1" in md
