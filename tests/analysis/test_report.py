"""results.md: the papers' layout, with published figures only beside a paper preset."""
from outeffhop_jax.analysis.experiments.study import report


def _result(variant, kurt, inf, ppl, w8):
  q = {"values": [w8], "mean": w8, "std": 0.0}
  return {"family": "opt", "variant": variant, "step": 10, "eval_batches": 2,
          "calibration": {"subsets": 3, "batches": 4, "percentile": None},
          "fp": {"perplexity": ppl, "loss": 1.0},
          "quantized": {"W8A8": q, "W6A6": q},
          "outliers": {"summary": {"avg_kurtosis": kurt, "max_kurtosis": kurt * 3,
                                   "max_kurtosis_module": "layers.0.fc2", "max_inf_norm": inf,
                                   "max_inf_norm_module": "layers.1.fc2", "sink_rate": 0.25,
                                   "beyond_6sigma": 1e-4},
                       "top_dims": [{"dim": 7, "max_abs": inf, "ratio_to_median": 9.0}],
                       "module_set": ["layers.0.fc2", "layers.1.fc2"]}}


def _study(preset):
  return {"preset": preset, "settings": ["W8A8", "W6A6"],
          "results": {"vanilla": _result("vanilla", 100.0, 50.0, 16.0, 20.0),
                      "softmax1": _result("softmax1", 80.0, 25.0, 15.9, 16.1)}}


def test_paper_preset_has_published_columns_and_pair_changes():
  md = report.markdown(_study("opt_125m"))
  assert "Paper: avg kurt" in md
  assert "23342" in md and "92.80" in md and "42.01" in md  # OutEffHop Table 1, OPT vanilla
  assert "Quantizable Transformers" in md and "1778" in md
  assert "| Vanilla → OutEffHop (softmax1) | -20.0 % | -50.0 % |" in md
  assert "W6A6" in md and "16.100 ± 0.000" in md


def test_tiny_preset_has_no_published_columns():
  md = report.markdown(_study("opt_tiny"))
  assert "Paper:" not in md and "Quantizable Transformers" not in md
  assert "| Vanilla | 16.000 | 50.00 | 100.00 | 20.000 ± 0.000 | 0.25 |" in md


def test_one_number_format_for_every_report():
  """The shared formatter against hand-written strings (the three reports' former outputs)."""
  from outeffhop_jax.analysis import _format as fmt

  assert fmt.num(3.14159) == "3.14" and fmt.num(2.5, 3) == "2.500"
  assert fmt.num(23341.5) == "23342" and fmt.grouped(23341.5, 1) == "23,342"
  assert fmt.grouped(418.74, 1) == "418.7"
  assert fmt.num(None) == fmt.num(float("nan")) == fmt.grouped(None) == "–"
  assert fmt.mean_std({"mean": 1.5, "std": 0.25}) == "1.5000 ± 0.2500"
  assert fmt.mean_std({"mean": 1294.0, "std": 0.25}, 3, compact=True) == "1294 ± 0.250"
  assert fmt.sci(2.5e-4) == "2.5e-04" and fmt.sci(None) == "–"
  assert fmt.dims([3, 7, 9, 11, 12]) == "3, 7, 9, 11, …" and fmt.dims([]) == "–"


def test_published_tables_come_from_the_docs_data_file():
  """docs/reference_results.json holds the papers' rows (values as the papers print them)."""
  outeffhop = report.reference_table("outeffhop")
  assert outeffhop["opt_125m"]["vanilla"] == (23341.5, 92.8, 15.974, 42.012)
  assert outeffhop["vit_s16"]["gated1"] == (22.0, 60.2, 74.089, 73.958)
  assert sorted(outeffhop) == ["bert_base", "opt_125m", "vit_s16"]  # STanHop rows: no preset
  quantizable = report.reference_table("quantizable")
  assert list(quantizable["bert_base"]) == ["vanilla", "clipped", "gated"]
  assert quantizable["bert_base"]["vanilla"] == (3076, 735, 4.49, 1294)
