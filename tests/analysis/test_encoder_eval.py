"""The pretrained-encoder evaluation on the real all-MiniLM-L6-v2 (a few short batches).

The model, a 32-passage / 32-pair evaluation set, its FP32 teacher outputs, the outlier metrics
and one ablation are computed once per module (the model itself once per worker: conftest `minilm`).
"""
import numpy as np
import pytest

from outeffhop_jax.analysis.quant import act_groups
from outeffhop_jax.analysis.quant import fidelity
from outeffhop_jax.analysis.outliers import metrics
from outeffhop_jax.analysis.quant import w8a8
from outeffhop_jax.data import embedded
from outeffhop_jax.nn import capture
ABLATED = ("qkv", "attn_probs", "ffn_output", "residual")


@pytest.fixture(scope="module")
def setup(minilm):
  _, model, tok = minilm
  data = fidelity.eval_data(tok, n_pairs=32, n_passages=32, calib_batches=4, calib_batch_size=8,
                            calib_subsets=1)
  teacher = fidelity.teacher_outputs(model, data)
  return model, tok, data, teacher


@pytest.fixture(scope="module")
def outl(setup):
  model, _, data, _ = setup
  return fidelity.outliers(model, data.passages, value_batches=1)


@pytest.fixture(scope="module")
def abl(setup):
  model, _, data, teacher = setup
  return fidelity.ablation(model, data, teacher=teacher, groups=ABLATED, log=lambda m: None)


def test_fidelity_and_retrieval_match_naive_numpy():
  rng = np.random.default_rng(0)
  a, b = rng.normal(size=(20, 8)), rng.normal(size=(20, 8))
  cos = [x @ y / np.linalg.norm(x) / np.linalg.norm(y) for x, y in zip(a, b)]
  np.testing.assert_allclose(fidelity.fidelity(a, b), np.mean(cos), rtol=1e-12)
  assert fidelity.fidelity(3.0 * a, a) == pytest.approx(1.0)
  q = b + 0.8 * rng.normal(size=b.shape)  # noisy queries: some rank their document first, some not
  ranks = []
  for i in range(len(q)):
    s = [q[i] @ d / np.linalg.norm(q[i]) / np.linalg.norm(d) for d in b]
    ranks.append(1 + sum(s[j] > s[i] for j in range(len(b))))
  r = fidelity.retrieval(q, b)
  assert 0 < r["recall@1"] < 1
  assert r["recall@1"] == pytest.approx(np.mean(np.array(ranks) == 1))
  assert r["mrr"] == pytest.approx(np.mean(1.0 / np.array(ranks)))
  assert fidelity.retrieval(b, b) == {"recall@1": 1.0, "mrr": 1.0}
  # A tie with another document counts against the query.
  assert fidelity.retrieval(np.eye(2)[[0, 0]], np.eye(2)[[0, 0]])["recall@1"] == 0.0


def test_masked_metrics_count_only_valid_entries():
  rng = np.random.default_rng(0)
  x = rng.standard_t(3, size=(3, 40))
  where = np.arange(40)[None, :] < np.array([[40], [25], [7]])
  for fn in (metrics.kurtosis, metrics.inf_norm, lambda r, w=None: metrics.beyond_sigma_fraction(
      r, 1.5, w)):
    np.testing.assert_allclose(fn(x, np.ones_like(where)), fn(x), rtol=1e-5)
    masked = np.asarray(fn(x, where))
    for i in range(3):
      np.testing.assert_allclose(masked[i], np.asarray(fn(x[i:i + 1, where[i]]))[0], rtol=1e-5)


def test_doc_passages_are_deterministic_disjoint_prose():
  train, ev = embedded.doc_passages("train"), embedded.doc_passages("eval")
  assert ev == embedded.doc_passages("eval")
  assert len(ev) >= 300 and len(train) > 5 * len(ev)
  assert not set(train) & set(ev)
  assert all(200 <= len(p) <= 1200 and "  " not in p and "\n" not in p for p in train + ev)
  assert sum(" the " in p for p in ev) > 0.9 * len(ev)  # English prose, not code
  q, d = embedded.retrieval_pairs(ev, n=50, seed=1)
  assert (q, d) == embedded.retrieval_pairs(ev, n=50, seed=1)
  assert len(q) == len(d) == 50 and q != embedded.retrieval_pairs(ev, n=50, seed=2)[0]
  for qi, di in zip(q, d):
    assert 1 <= len(qi.split()) <= 12 and len(di.split()) >= 24
    assert f"{qi} {di}" in ev  # the query is the opening of a passage, the document the rest
  with pytest.raises(ValueError, match="split"):
    embedded.doc_passages("validation")


def test_batches_pad_rows_are_dropped(setup):
  model, tok, _, _ = setup
  texts = ["A function returns a value.", "Classes bundle data and behaviour together.",
           "The loop terminates.", "Modules are files.", "Exceptions signal errors."]
  bl = fidelity.batches(tok, texts, batch_size=4, pad_to=16)
  assert [b[0].shape for b in bl] == [(4, 16), (4, 16)]
  assert (bl[1][1][1:] == 0).all() and fidelity.num_rows(bl) == 5
  e = fidelity.embed(model, bl)
  assert e.shape == (5, 384) and e.dtype == np.float32
  np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, rtol=1e-5)
  alone = fidelity.embed(model, fidelity.batches(tok, texts[4:], batch_size=1, pad_to=8))
  np.testing.assert_allclose(e[4], alone[0], atol=2e-6)  # padding never reaches real rows


def test_outliers_name_one_dominant_ffn_dimension(setup, outl):
  dom = outl["dominant"]
  ffn = outl["by_kind"]["ffn_output"]
  # The same hidden dimension is the argmax of max |x| in the FFN outputs of several layers.
  assert ffn["argmax_dim"].count(dom["dim"]) >= 2 and len(dom["layers"]) >= 2
  assert dom["max_abs"] > 100 and dom["ratio_to_median"] > 30
  assert outl["summary"]["max_inf_norm"] > 100
  # Measured ~6,800 (BERT set) and ~4,600 (with attention LayerNorms) on these passages.
  assert outl["summary"]["avg_kurtosis"] > 1000
  assert outl["summary_all"]["num_modules"] == 18 and outl["summary"]["num_modules"] == 12
  v = outl["values"]
  assert v["dim"] == dom["dim"] and v["std_dim"] > 20 * v["std_typical"]
  # Its massive values sit on the [CLS] token of every sequence (measured: 32 of 32, nothing else).
  assert v["massive_token_ids"][0] == [setup[1].bos_id, 32]
  assert 0.0 < outl["sink_rate"] < 1.0
  # The FFN output kernel writing that dimension holds the worst weight outliers (max |w| ~175
  # std in layer 0), so per-tensor int8 rounds most of its other weights to 0.
  worst = outl["weights"][0]
  assert worst["kernel"].endswith(".output") and worst["out_dim"] == dom["dim"]
  assert worst["ratio"] > 100 and worst["zeroed"] > 0.3


def test_outlier_kurtosis_counts_real_tokens_only(setup, outl):
  model, _, data, _ = setup
  ids, mask = data.passages[0]
  _, acts = capture(model, lambda m: m(ids, attention_mask=mask))
  name = "layers.1.ffn_output"
  x = np.asarray(acts[name], np.float64)
  k = []
  for b in range(len(ids)):
    r = x[b][mask[b] > 0].ravel()
    k.append(np.mean((r - r.mean()) ** 4) / (r.std(ddof=1) ** 4 + 1e-6))
  np.testing.assert_allclose(outl["modules"][name]["kurtosis"], np.mean(k), rtol=2e-3)
  # ... which the padded rows (the unmasked formula) would change.
  unmasked = float(np.mean(metrics.kurtosis(x.reshape(len(ids), -1))))
  assert abs(unmasked - np.mean(k)) > 0.01 * np.mean(k)


def test_w8a8_lowers_embedding_fidelity(abl, setup):
  rows = abl["rows"]
  _, _, data, teacher = setup
  # Weights alone (per-tensor int8) already cost ~0.04 (measured 0.958); W8A8 0.82.
  assert rows["all"]["fidelity"] < 0.9
  assert rows["all"]["fidelity"] < rows["none"]["fidelity"] - 0.05
  assert 0.9 < rows["none"]["fidelity"] < 0.995
  assert teacher["retrieval"]["recall@1"] > 0.5  # the FP32 encoder does retrieve


def test_ablation_points_at_the_outlier_carriers(abl):
  f = {g: r["fidelity"] for g, r in abl["rows"].items()}
  # Measured: residual 0.89, ffn_output 0.92 vs qkv / attn_probs at the weights-only 0.957.
  for bad in ("residual", "ffn_output"):
    for mild in ("qkv", "attn_probs"):
      assert f[bad] < f[mild] - 0.02, f
  for mild in ("qkv", "attn_probs"):
    assert abs(f[mild] - f["none"]) < 0.005, f
  assert abl["ranking"][:2] == ["residual", "ffn_output"]
  assert abl["rows"]["residual"]["quantizers"] == 12 and abl["rows"]["qkv"]["quantizers"] == 18


def test_quantize_with_groups_matches_the_ablation_row(setup, abl):
  model, _, data, teacher = setup
  q = fidelity.quantize(model, data.calib[0], groups=("ffn_output",))
  modes = {}
  for path, qz in w8a8.quantizers(q):
    modes.setdefault(act_groups.group_of(".".join(map(str, path))), set()).add(qz.mode)
  assert modes.pop("ffn_output") == {"quantize"} and set.union(*modes.values()) == {"off"}
  e = fidelity.embed(q, data.passages)
  np.testing.assert_allclose(fidelity.fidelity(e, teacher["passages"]),
                             abl["rows"]["ffn_output"]["fidelity"], atol=1e-5)
  with pytest.raises(ValueError, match="unknown activation-quantizer groups"):
    fidelity.quantize(model, data.calib[0], groups=("ffn",))
