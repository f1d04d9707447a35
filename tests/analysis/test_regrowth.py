"""Outlier regrowth: the InfoNCE loss, option checks, and a tiny resumable end-to-end run."""
import json
import math

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats as scipy_stats

from outeffhop_jax.analysis import __main__ as cli
from outeffhop_jax.analysis.experiments.regrowth import loss as regrowth_loss
from outeffhop_jax.analysis.experiments.regrowth import report
from outeffhop_jax.analysis.experiments.regrowth import run as regrowth


def _naive_info_nce(q, d, temperature, symmetric):
  q, d = np.asarray(q, np.float64), np.asarray(d, np.float64)
  P = len(q)
  fwd = bwd = 0.0
  for i in range(P):
    s_row = [q[i] @ d[j] / temperature for j in range(P)]
    s_col = [q[j] @ d[i] / temperature for j in range(P)]
    fwd += -math.log(math.exp(s_row[i]) / sum(math.exp(x) for x in s_row))
    bwd += -math.log(math.exp(s_col[i]) / sum(math.exp(x) for x in s_col))
  return (fwd / P + bwd / P) / 2 if symmetric else fwd / P


def test_info_nce_matches_a_naive_formula():
  rng = np.random.default_rng(0)
  q, d = rng.normal(size=(2, 6, 16))
  q /= np.linalg.norm(q, axis=-1, keepdims=True)
  d /= np.linalg.norm(d, axis=-1, keepdims=True)
  for symmetric in (True, False):
    got = regrowth_loss.info_nce(jnp.asarray(q, jnp.float32), jnp.asarray(d, jnp.float32), 0.05,
                                 symmetric)
    np.testing.assert_allclose(float(got), _naive_info_nce(q, d, 0.05, symmetric), rtol=1e-4)
  # Perfectly separated pairs at a small temperature: the loss vanishes.
  e = np.eye(6, 16)
  assert float(regrowth_loss.info_nce(jnp.asarray(e), jnp.asarray(e), 0.01)) < 1e-6


@pytest.mark.parametrize("argv, message", [
    (["--arms", "vanilla,nosuch"], "unknown attention variant 'nosuch'"),
    (["--seeds", "0"], "--seeds must be >= 1"),
    (["--steps", "0"], "--steps must be >= 1"),
    (["--pairs_per_step", "1"], "--pairs_per_step must be >= 2"),
    (["--arms", "vanilla,vanilla"], "repeated"),
])
def test_bad_options_fail_before_compute(argv, message, tmp_path, monkeypatch):
  monkeypatch.setattr(regrowth, "run_regrowth", lambda *a, **k: pytest.fail("ran with bad options"))
  out = tmp_path / "out"
  with pytest.raises(SystemExit, match=message):
    cli.main(["regrowth", "--out", str(out)] + argv)
  assert not out.exists()


def _t_interval(x):
  x = np.asarray(x, np.float64)
  n = len(x)
  return x.mean(), scipy_stats.t.ppf(0.975, n - 1) * x.std(ddof=1) / math.sqrt(n)


def test_tiny_run_intervals_resume_and_refusal(one_layer_minilm, tmp_path):
  # repair_steps 0: phase 1 still runs (repair's train_run, 0 steps), saves and reloads the
  # parameters; its training step is repair's, tested in test_repair.py.
  out = tmp_path / "rg"
  argv = ["regrowth", "--out", str(out), "--arms", "vanilla,softmax1", "--seeds", "2",
          "--steps", "2", "--eval_every", "2", "--repair_steps", "0", "--repair_batch_size", "2",
          "--pairs_per_step", "4", "--seq_len", "16", "--query_len", "8", "--max_len", "16",
          "--eval_passages", "4", "--n_pairs", "6", "--calib_batches", "1"]
  lines = []
  assert cli.main(argv, log=lines.append) == 0
  r = json.loads((out / "results.json").read_text())
  seeds = {a: [json.loads((out / "runs" / a / f"seed{k}.json").read_text()) for k in (0, 1)]
           for a in ("vanilla", "softmax1")}
  for arm, runs in seeds.items():
    assert (out / "runs" / arm / "repaired" / "params.npz").exists()
    for k, s in enumerate(runs):
      assert [p["step"] for p in s["trajectory"]] == [0, 2]
      assert r["runs"][arm][str(k)]["trajectory"] == s["trajectory"]
    # Step 0 is the repaired model, the same for every seed; the seeds' data orders differ.
    assert runs[0]["trajectory"][0] == runs[1]["trajectory"][0]
    assert runs[0]["trajectory"][1]["train_loss"] != runs[1]["trajectory"][1]["train_loss"]
  assert r["original"]["fidelity_fp32"] == pytest.approx(1.0, abs=1e-5)
  summary = r["summary"]
  for key, _ in report.METRICS:
    change = {}
    for arm, runs in seeds.items():
      first = [s["trajectory"][0][key] for s in runs]
      last = [s["trajectory"][-1][key] for s in runs]
      change[arm] = np.subtract(last, first)
      got = summary["arms"][arm][key]
      m, h = _t_interval(last)
      assert got["last"]["mean"] == pytest.approx(m)
      assert got["last"]["half_width"] == pytest.approx(h)
      m, h = _t_interval(change[arm])
      assert got["change"]["mean"] == pytest.approx(m, abs=1e-12)
      assert got["change"]["half_width"] == pytest.approx(h, abs=1e-12)
      assert got["step0"]["half_width"] == 0.0
    m, h = _t_interval(change["softmax1"] - change["vanilla"])
    d = summary["vs_baseline"]["softmax1"][key]["change_diff"]
    assert d["mean"] == pytest.approx(m, abs=1e-12)
    assert d["half_width"] == pytest.approx(h, abs=1e-12)
    assert d["excludes_zero"] == bool(m - h > 0 or m + h < 0)
  md = (out / "results.md").read_text()
  assert "| vanilla | 2 |" in md and "| softmax1 | 2 |" in md and "Reading (2 seeds" in md
  assert (out / "regrowth_avg_kurtosis.png").exists()

  # A rerun skips every finished run; a changed comparable option is refused before compute.
  mtimes = {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("*") if p.is_file()}
  lines = []
  assert cli.main(argv + ["--no_plots"], log=lines.append) == 0
  assert any("4 of 4 runs finished" in line and "0 to do" in line for line in lines)
  assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
  again = json.loads((out / "results.json").read_text())
  assert again["summary"] == summary and again["original"] == r["original"]
  with pytest.raises(SystemExit, match=r"--steps 2 -> 3.*not be comparable"):
    cli.main([a if a != "2" or argv[i - 1] != "--steps" else "3" for i, a in enumerate(argv)])
