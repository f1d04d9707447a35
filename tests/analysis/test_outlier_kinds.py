"""The Systematic Outliers taxonomy (activation, weight, attention outliers) against planted
outliers and naive NumPy references, then end to end on a tiny OPT."""
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from outeffhop_jax import analysis as A
from outeffhop_jax import models
from outeffhop_jax.analysis.outliers import collect
from outeffhop_jax.analysis.outliers import kinds as ok
from outeffhop_jax.analysis.experiments.study import report
from outeffhop_jax.nn import capture
from outeffhop_jax.nn.projections import HeadsIn

D, F = 32, 64


def _opt(layers=2):
  cfg = models.OPTConfig.from_preset("tiny", vocab_size=64, max_len=16, d_model=D,
                                     num_layers=layers, num_heads=4, d_ff=F)
  return models.OPT(cfg, rngs=nnx.Rngs(0))


# --- weights ----------------------------------------------------------------------------------

def test_planted_weight_outliers_are_found_in_the_right_module_and_channel():
  m = _opt()
  # fc2 kernel [F, D]: output column 7 (a residual-stream dim); fc1 kernel [D, F]: input row 3.
  m.layers[1].fc2.kernel[...] = m.layers[1].fc2.kernel[...].at[:, 7].set(1.0)
  m.layers[0].fc1.kernel[...] = m.layers[0].fc1.kernel[...].at[3, :].set(-0.8)
  m.layers[0].final_layer_norm.scale[...] = m.layers[0].final_layer_norm.scale[...].at[5].set(20.0)
  w = ok.weight_outliers(m)
  mats, lns = w["matrices"], w["layer_norms"]
  assert mats["layers.1.fc2"]["out_channels"] == [7] and mats["layers.1.fc2"]["in_channels"] == []
  assert mats["layers.1.fc2"]["hidden_dims"] == [7] and mats["layers.1.fc2"]["layer"] == 1
  assert mats["layers.0.fc1"]["in_channels"] == [3] and mats["layers.0.fc1"]["hidden_dims"] == [3]
  others = [n for n, s in mats.items() if s["in_channels"] or s["out_channels"]]
  assert sorted(others) == ["layers.0.fc1", "layers.1.fc2"]
  # Q/K/V (HeadsIn [D, N, H]) and out (HeadsOut [N, H, D]) are walked as [fan_in, fan_out].
  assert mats["layers.0.self_attn.query"]["shape"] == [D, D]
  assert mats["layers.0.self_attn.out"]["shape"] == [D, D]
  assert len(mats) == 2 * 6  # q, k, v, out, fc1, fc2 per layer; embeddings skipped
  np.testing.assert_allclose(lns["layers.0.final_layer_norm"]["max_ratio"], 20.0)
  assert lns["layers.0.final_layer_norm"]["dims"] == [5]
  assert lns["layers.1.final_layer_norm"]["dims"] == [] and lns["final_layer_norm"]["layer"] is None


def test_weight_kurtosis_ratio_and_channels_match_naive_numpy():
  rng = np.random.default_rng(0)
  w = rng.standard_t(3, size=(24, 40)) * 0.02  # heavy tails, weight-sized
  flat = [float(x) for x in w.reshape(-1)]
  n = len(flat)
  mean = sum(flat) / n
  var = sum((x - mean) ** 2 for x in flat) / (n - 1)
  m4 = sum((x - mean) ** 4 for x in flat) / n
  s = ok.weight_stats(w)
  np.testing.assert_allclose(s["kurtosis"], m4 / var**2, rtol=1e-10)
  assert s["kurtosis"] > 4  # and metrics.kurtosis's +1e-6 would have wrecked it at this scale
  assert float(A.kurtosis(jnp.asarray(w.reshape(1, -1), jnp.float32))[0]) < 0.5 * s["kurtosis"]
  mags = sorted(abs(x) for x in flat)
  median = (mags[n // 2 - 1] + mags[n // 2]) / 2  # n is even
  np.testing.assert_allclose(s["max_ratio"], mags[-1] / median, rtol=1e-12)
  row_max = [max(abs(x) for x in row) for row in w]
  col_max = [max(abs(w[i, j]) for i in range(w.shape[0])) for j in range(w.shape[1])]
  for k in (1.5, 2.5):
    assert ok.outlier_channels(w, 0, k) == [i for i, v in enumerate(row_max)
                                            if v > k * np.median(row_max)]
    assert ok.outlier_channels(w, 1, k) == [j for j, v in enumerate(col_max)
                                            if v > k * np.median(col_max)]


# --- attention --------------------------------------------------------------------------------

def _softmax(logits):
  e = np.exp(logits - logits.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def test_sink_at_first_key_and_uniform_map():
  B, N, T, S = 2, 3, 8, 8
  logits = np.zeros((B, N, T, S))
  logits[..., 0] = 10.0
  p = _softmax(logits)
  r = ok.attention_outliers(p)
  want = math.exp(10) / (math.exp(10) + S - 1)
  assert r["sink_head_frac"] == 1.0
  np.testing.assert_allclose(r["first_token_mass"], [want] * N, rtol=1e-6)
  np.testing.assert_allclose(r["max_received"], want, rtol=1e-6)
  np.testing.assert_allclose(r["mean_row_sum"], [1.0] * N, rtol=1e-6)
  assert sorted({j for _, j, _ in r["sinks"]}) == [0] and len(r["sinks"]) == N
  assert float(A.sink_rate(p)) == r["sink_head_frac"]  # the Gu et al. rate, for a sink at key 0

  u = ok.attention_outliers(np.full((B, N, T, S), 1.0 / S))
  assert u["sink_head_frac"] == 0.0 and u["sinks"] == []
  np.testing.assert_allclose(u["max_received"], 1.0 / S, rtol=1e-6)


def test_masked_pairs_and_padded_queries_are_excluded():
  rng = np.random.default_rng(1)
  B, N, T = 2, 2, 6
  causal = np.tril(np.ones((T, T), bool))
  logits = rng.normal(size=(B, N, T, T))
  logits[:, 1, :, 2] += 6.0  # head 1 sinks on key 2 (visible to queries 2..5)
  p = _softmax(np.where(causal, logits, -np.inf))
  valid = np.ones((B, T), bool)
  valid[1, 4:] = False
  dirty = np.where(causal, p, 5.0)  # garbage where the mask is off ...
  dirty[1, :, 4:, :] = 7.0          # ... and in the padded queries
  r = ok.attention_outliers(dirty, mask=causal, valid_T=valid)
  # Naive reference: loop over the valid (b, i) and the visible keys of the clean map.
  recv, rows, nq = np.zeros((N, T)), np.zeros(N), 0
  for b in range(B):
    for i in range(T):
      if valid[b, i]:
        nq += 1
        for n in range(N):
          for j in range(i + 1):
            recv[n, j] += p[b, n, i, j]
            rows[n] += p[b, n, i, j]
  np.testing.assert_allclose(r["received"], recv / nq, rtol=1e-5)
  np.testing.assert_allclose(r["mean_row_sum"], rows / nq, rtol=1e-5)
  assert {(n, j) for n, j, _ in r["sinks"]} == {(n, j) for n in range(N) for j in range(T)
                                                if recv[n, j] / nq > ok.SINK_THRESHOLD}
  assert any(n == 1 and j == 2 for n, j, _ in r["sinks"])


def test_unnormalised_rows_are_read_as_they_are():
  """Sigmoid-style maps: the received mass is absolute and the row sum is reported beside it."""
  p = np.full((1, 2, 4, 4), 0.05)
  p[:, 0, :, 0] = 0.9  # head 0 hands out 0.9 + 3 * 0.05 = 1.05 per query, head 1 only 0.2
  r = ok.attention_outliers(p)
  np.testing.assert_allclose(r["mean_row_sum"], [1.05, 0.2], rtol=1e-6)
  np.testing.assert_allclose(r["first_token_mass"], [0.9, 0.05], rtol=1e-6)
  assert r["sink_head_frac"] == 0.5


def test_sink_value_ratio_reads_the_kv_head_of_each_query_head():
  v = np.array([[0.1, 1.0, 1.0, 1.0], [2.0, 2.0, 1.0, 1.0]])  # [K = 2, S]
  recv = np.array([[0.9, 0.05, 0.03, 0.02], [0.25] * 4, [0.1, 0.1, 0.1, 0.7], [0.25] * 4])  # N = 4
  # Head 2 reads kv head 1 = [2, 2, 1, 1]: sink key 3 (norm 1) against the mean 5/3 of the others.
  np.testing.assert_allclose(ok.sink_value_ratio(v, recv), [0.1, np.nan, 1.0 / (5.0 / 3.0), np.nan])


# --- activations ------------------------------------------------------------------------------

def test_planted_massive_activation_and_both_thresholds():
  rng = np.random.default_rng(2)
  x = rng.normal(size=(2, 16, D)).astype(np.float32)
  x[1, 3, 17] = 5000.0  # > max(100, 1000 x median |x| ~ 670): massive
  x[0, 5, 2] = 300.0    # > 100 but < 1000 x median: not massive under Sun et al.'s criterion
  med = np.median(np.abs(x.reshape(2, -1)), axis=1)
  for tau, k in ((100.0, 1000.0), (100.0, 100.0), (1000.0, 100.0)):
    naive = np.abs(x) > np.maximum(tau, k * med)[:, None, None]
    np.testing.assert_array_equal(ok.massive_mask(jnp.asarray(x), tau_abs=tau, k=k), naive)
  s = ok.massive_activations(jnp.asarray(x))
  assert float(s["count"]) == 1.0 and float(s["entries"]) == x.size
  assert np.nonzero(np.asarray(s["dim_counts"]))[0].tolist() == [17]
  assert np.nonzero(np.asarray(s["pos_counts"]))[0].tolist() == [3]
  np.testing.assert_allclose(float(s["ratio_max"]), 5000.0 / med[1], rtol=1e-5)
  assert float(ok.massive_activations(jnp.asarray(x), k=100.0)["count"]) == 2.0
  # A padding row (weight 0) contributes nothing.
  s0 = ok.massive_activations(jnp.asarray(x), row_weights=jnp.array([1.0, 0.0]))
  assert float(s0["count"]) == 0.0 and float(s0["entries"]) == x.size / 2
  np.testing.assert_allclose(float(s0["ratio_max"]), 300.0 / med[0], rtol=1e-5)


# --- end to end -------------------------------------------------------------------------------

def _finite(v):
  if isinstance(v, list):
    return all(_finite(x) for x in v)
  return v is not None and (isinstance(v, str) or math.isfinite(v))


def test_collect_kinds_on_a_tiny_model():
  m = _opt()
  m.layers[1].fc2.kernel[...] = m.layers[1].fc2.kernel[...].at[:, 7].set(1.0)
  x = jax.random.randint(jax.random.key(1), (4, 16), 0, 64)
  batches = [(x, np.ones(4)), (x, np.array([1.0, 1.0, 0.0, 0.0]))]
  # Loose thresholds so that every kind (and every tie) is defined on a random tiny model.
  r = ok.collect_kinds(m, "opt", batches, tau_abs=0.0, k=4.0, sink_threshold=0.1)
  s = r["summary"]
  assert set(s) == set(ok.SUMMARY_KEYS)
  assert all(_finite(v) for v in s.values()), s
  json.dumps(r)  # JSON-ready
  assert isinstance(m.layers[0].self_attn.value, HeadsIn)  # the model itself is untouched
  assert s["weight_max_ratio_module"] == "layers.1.fc2" and 7 in s["weight_outlier_dims"]
  assert s["weight_num_matrices"] == 12 and s["attn_num_heads"] == 8
  assert 7 in s["act_outlier_dims"] and 7 in s["shared_outlier_dims"]
  assert s["act_massive_frac"] > 0 and s["attn_sink_head_frac"] == 1.0
  np.testing.assert_allclose(s["attn_mean_row_sum"], 1.0, rtol=1e-5)
  assert r["per_layer"]["layer"] == [0, 1]

  # First-token mass equals collect's per-head mean attention to token 0 (another code path).
  c = collect.collect(m, "opt", batches)
  first = np.concatenate([c["sink_first_token"][n] for n in sorted(c["sink_first_token"])])
  np.testing.assert_allclose(s["attn_first_token_mass"], first.mean(), rtol=1e-5)

  # Sink value ratio against value vectors recomputed from the captured attention input.
  _, acts = capture(m, lambda mm: mm(x), attention_probs=True)
  layer = r["attention"]["layers.0.self_attn.attn_probs"]
  v_BSKH = m.layers[0].self_attn.value(acts["layers.0.self_attn_layer_norm"])
  vnorm = np.asarray(jnp.linalg.norm(v_BSKH, axis=-1))  # [B, S, K]
  w = np.array([2.0, 2.0, 1.0, 1.0])  # rows 0, 1 appear in both batches
  vnorm_KS = np.einsum("bsk,b->ks", vnorm, w) / w.sum()
  p = np.asarray(acts["layers.0.self_attn.attn_probs"])
  recv = np.einsum("bnts,b->ns", p, w) / (w.sum() * p.shape[2])
  want = ok.sink_value_ratio(vnorm_KS, recv, threshold=0.1)
  np.testing.assert_allclose([np.nan if a is None else a for a in layer["sink_value_ratio"]], want,
                             rtol=1e-4)

  # Default (Sun et al.) thresholds on a random tiny model: no massive activation, nothing breaks.
  d = ok.collect_kinds(m, "opt", batches[:1], value_norms=False)["summary"]
  assert d["act_massive_frac"] == 0.0 and d["act_outlier_dims"] == []
  assert math.isnan(d["act_in_sink_positions"]) and math.isnan(d["attn_sink_value_ratio"])


def test_report_table_handles_any_variant_name():
  def result(kinds):
    q = {"values": [20.0], "mean": 20.0, "std": 0.0}
    s = {"avg_kurtosis": 4.0, "max_kurtosis": 9.0, "max_kurtosis_module": "layers.0.fc2",
         "max_inf_norm": 12.0, "max_inf_norm_module": "layers.1.fc2", "sink_rate": 0.25,
         "beyond_6sigma": 1e-4}
    out = {"family": "opt", "step": 10, "eval_batches": 2, "fp": {"perplexity": 16.0},
           "calibration": {"subsets": 3, "batches": 4, "percentile": None},
           "quantized": {"W8A8": q}, "outliers": {"summary": s, "top_dims": [], "module_set": ["layers.0.fc2"]}}
    if kinds:
      out["outlier_kinds"] = kinds
    return out

  kinds = {"summary": {k: float("nan") for k in ok.SUMMARY_KEYS},
           "thresholds": {"tau_abs": 100.0, "k": 1000.0, "weight_k": 5.0, "sink_threshold": 0.3}}
  kinds["summary"].update(act_massive_frac=2.5e-4, act_max_ratio=1234.4, act_outlier_dims=[7, 3],
                          weight_outlier_channels=2, weight_outlier_dims=[7],
                          attn_sink_head_frac=0.5, attn_sink_positions=[0],
                          shared_outlier_dims=[7], ln_gamma_outlier_dims=[])
  study = {"preset": "opt_tiny", "settings": ["W8A8"],
           "results": {"softpick": result(kinds), "vanilla": result(None),
                       "my_new_thing": result(kinds)}}
  md = report.markdown(study)
  assert "## Outlier kinds (Systematic Outliers taxonomy)" in md
  assert "| my_new_thing | 2.5e-04 | 1234 | 7, 3 | – | – | 2 | – | 0.50 |" in md
  assert f"| {report.LABELS.get('softpick', 'softpick')} | 2.5e-04 |" in md
  assert "| Vanilla |" + " – |" * 12 in md  # an older result without the kinds
  assert "max(100, 1000 × the sequence's median |x|)" in md
