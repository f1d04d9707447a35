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
