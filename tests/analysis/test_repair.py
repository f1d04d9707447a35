"""Outlier repair of the packaged all-MiniLM-L6-v2: penalties, a few real train steps, the CLI."""
import json

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from outeffhop_jax.analysis import __main__ as cli
from outeffhop_jax.analysis.experiments.repair import run as repair
from outeffhop_jax.analysis.experiments.repair import loss as repair_loss
from outeffhop_jax.models import hf

# One small training shape for the direct steps and the CLI, so they share one compilation.
B, T = 4, 32
TRAIN = repair_loss.TrainOptions(lr=3e-4, batch_size=B, seq_len=T)


def _kurtosis_np(row):
  row = np.asarray(row, np.float64)
  return np.mean((row - row.mean()) ** 4) / (np.std(row, ddof=1) ** 4 + 1e-6)


def test_penalties_match_naive_numpy():
  x = np.random.default_rng(0).standard_t(2, size=(3, 5, 8)).astype(np.float32) * 4
  tau = 6.0
  want = np.mean(np.maximum(np.abs(x) - tau, 0.0) ** 2)
  np.testing.assert_allclose(repair_loss.magnitude_penalty(jnp.asarray(x), tau), want, rtol=1e-5)
  k = np.array([_kurtosis_np(r) for r in x.reshape(3, -1)])
  want = np.mean(np.log(np.maximum(k, 3.5) / 3.5))
  np.testing.assert_allclose(repair_loss.kurtosis_penalty(jnp.asarray(x), 3.5), want, rtol=1e-4)
  # Below the threshold nothing is penalised, and the mean over tensors is what `penalty` returns.
  assert float(repair_loss.magnitude_penalty(jnp.clip(jnp.asarray(x), -tau, tau), tau)) == 0.0
  acts = {"embeddings_layer_norm": x, "layers.0.ffn_output": x, "layers.0.attention_layer_norm": x}
  got = repair_loss.penalty(acts, kind="magnitude", tau=tau, num_layers=1,
                            modules=("ffn_output", "ffn_residual"))
  want = (np.mean(np.maximum(np.abs(x) - tau, 0) ** 2)
          + np.mean(np.maximum(np.abs(2 * x) - tau, 0) ** 2)) / 2
  np.testing.assert_allclose(got, want, rtol=1e-5)


def test_runs_are_planned_as_the_ablation():
  runs = repair.plan_runs(("softmax1", "gated"), repair.ARMS)
  assert [r.name for r in runs] == ["penalty", "softmax1:swap", "gated:swap", "softmax1:both",
                                    "gated:both"]
  assert not runs[1].uses_penalty and runs[0].uses_penalty and runs[0].variant == "vanilla"
  assert [r.name for r in repair.parse_runs(repair.PRESETS["default"]["runs"])] == [
      "penalty", "softmax1:swap", "softmax1:both", "gated:both"]
  assert repair.attention_overrides("vanilla") == {}
  assert repair.attention_overrides("softmax1") == {"normalizer": "softmax1"}
  assert repair.attention_overrides("sink")["sinks"] == "learned"


@pytest.mark.parametrize("argv, message", [
    (["--variants", "softmax1,nosuch"], "unknown attention variant 'nosuch'"),
    (["--runs", "gated:twice"], "unknown arm 'twice'"),
    (["--penalty", "huber"], "unknown penalty 'huber'"),
    (["--penalty_modules", "ffn_output,fc9"], "unknown penalty module"),
    (["--runs", "penalty", "--variants", "gated"], "not both"),
])
def test_bad_arguments_fail_before_compute(argv, message, tmp_path, monkeypatch):
  monkeypatch.setattr(repair, "run_repair", lambda *a, **k: pytest.fail("ran with bad arguments"))
  with pytest.raises(SystemExit, match=message):
    cli.main(["repair", "--out", str(tmp_path)] + argv)
  assert not any(tmp_path.iterdir())


def test_train_steps_shrink_the_outliers_and_vanilla_starts_at_the_teacher(minilm):
  from outeffhop_jax.data import embedded

  path, teacher, tok = minilm
  texts = embedded.doc_passages("train")[:B * 4]
  batches = [tok.encode_batch(texts[i * B:(i + 1) * B], max_len=T) for i in range(4)]
  assert all(ids.shape == (B, T) for ids, _ in batches)  # long passages: truncated, no padding
  student = hf.from_pretrained(path)
  params, opt_state, step = repair_loss.make_train_step(student, TRAIN)
  terms = []
  for ids, mask in batches + batches[:1]:
    targets = repair_loss.jit_teacher_targets(teacher, jnp.asarray(ids), jnp.asarray(mask), True)
    params, opt_state, t = step(params, opt_state, targets, ids, mask, TRAIN.lr)
    terms.append({k: float(v) for k, v in t.items()})
  # Step 0 of a vanilla student with the same weights is the teacher: no distillation loss.
  assert terms[0]["mse"] < 1e-10 and abs(terms[0]["cos"]) < 1e-6
  # Four steps later, on the first batch again: a smaller penalty and a smaller FFN outlier.
  assert terms[-1]["penalty"] < 0.9 * terms[0]["penalty"]
  ids, mask = (jnp.asarray(a) for a in batches[0])
  nnx.update(student, params)
  assert _max_ffn_output(student, ids, mask) < 0.97 * _max_ffn_output(teacher, ids, mask)
  # penalty="none": the loss of the unchanged model is ~0 (fidelity 1 at step 0).
  none = repair_loss.TrainOptions(penalty="none", batch_size=B, seq_len=T)
  targets = repair_loss.jit_teacher_targets(teacher, ids, mask, False)
  terms = repair._jit_eval_terms(teacher, targets, ids, mask, none)
  assert float(terms["loss"]) < 1e-6 and float(terms["penalty"]) == 0.0


@nnx.jit
def _max_ffn_output(model, ids, mask):
  _, acts = repair_loss.forward(model, ids, mask)
  return jnp.max(jnp.stack([jnp.abs(acts[f"layers.{i}.ffn_output"]).max() for i in range(6)]))


def test_cli_end_to_end_with_a_tiny_budget(one_layer_minilm, tmp_path):
  # On MiniLM's first layer: the same code paths (the six-layer model trains in the test above).
  out = tmp_path / "repair"
  lines = []
  argv = ["repair", "--out", str(out), "--runs", "penalty", "--steps", "2", "--eval_every", "1",
          "--n_passages", "8", "--n_pairs", "8", "--calib_subsets", "1", "--calib_batches", "1",
          "--curve_batches", "1", "--max_len", str(T), "--seq_len", str(T), "--batch_size", str(B),
          "--lr", str(TRAIN.lr), "--time_budget_s", "600"]
  assert cli.main(argv, log=lines.append) == 0
  r = json.loads((out / "results.json").read_text())
  run = r["runs"]["penalty"]
  assert run["steps_run"] == 2 and [p["step"] for p in run["curve"]] == [0, 1, 2]
  assert run["curve"][0]["fidelity"] > 0.9999 and run["curve"][0]["distill"] < 1e-6
  assert run["curve"][-1]["penalty"] < run["curve"][0]["penalty"]
  assert set(r["targets"]["penalty"]) >= {"kurtosis_ratio", "fidelity", "w8a8_gain", "met"}
  assert r["step0"]["vanilla"]["fp32"]["fidelity"] == pytest.approx(1.0, abs=1e-5)
  md = (out / "results.md").read_text()
  table = [l for l in md.splitlines() if l.startswith("| Original") or l.startswith("| vanilla +")]
  assert len(table) >= 3  # original and the run in the main table, the run in the targets table
  assert {"curves.png", "curve_penalty.png"} <= {p.name for p in out.iterdir()}
  assert any("training share" in l for l in lines)
