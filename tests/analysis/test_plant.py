"""A planted outlier (one LayerNorm dimension x100) makes the metrics jump and W8A8 degrade, while
the unplanted, briefly trained model quantizes well."""
import numpy as np

from outeffhop_jax.analysis.outliers import collect
from outeffhop_jax.analysis.experiments.study import runs
from outeffhop_jax.analysis.quant import w8a8

DIM, LAYER, SCALE = 5, 0, 100.0


def _plant(model):
  """Scales hidden dim DIM (scale and bias) of layer LAYER's attention-input LayerNorm by SCALE
  and divides the matching input rows of the Q/K/V kernels by SCALE: the float function is
  unchanged, but the LayerNorm output (an outlier module, and the tensor the per-tensor 8-bit
  grid of the Q/K/V inputs is fitted to) now carries a 100x outlier."""
  block = model.layers[LAYER]
  ln, attn = block.self_attn_layer_norm, block.self_attn
  ln.scale[...] = ln.scale[...].at[DIM].multiply(SCALE)
  ln.bias[...] = ln.bias[...].at[DIM].multiply(SCALE)
  for proj in (attn.query, attn.key, attn.value):
    proj.kernel[...] = proj.kernel[...].at[DIM].divide(SCALE)
  return model


def _measure(run, evs, cal):
  fp = runs.evaluate_model(run.model, run.task, evs)
  summary = collect.collect(run.model, "opt", [(b.inputs, b.weights) for b in evs])["summary"]
  q = w8a8.calibrate(w8a8.quantize_model(run.model, "opt", w8a8.SETTINGS["W8A8"]), cal)
  return fp["loss"], summary, runs.evaluate_model(q, run.task, evs)["loss"]


def test_planted_outlier_jumps_metrics_and_breaks_w8a8(vanilla_workdir):
  run = runs.load_run(vanilla_workdir)
  evs = runs.eval_set(run, 2)
  cal = runs.calibration_inputs(run, 0, 2)
  loss, s, loss_q = _measure(run, evs, cal)
  _plant(run.model)
  loss_p, s_p, loss_pq = _measure(run, evs, cal)

  np.testing.assert_allclose(loss_p, loss, rtol=1e-4)  # same float function
  assert s_p["max_inf_norm"] > 10 * s["max_inf_norm"]
  assert s_p["max_inf_norm_module"] == f"layers.{LAYER}.self_attn_layer_norm"
  assert s_p["max_kurtosis_module"] == f"layers.{LAYER}.self_attn_layer_norm"
  assert s_p["max_kurtosis"] > 5 * s["max_kurtosis"]
  assert s_p["avg_kurtosis"] > 2 * s["avg_kurtosis"]  # one module of 11 carries it
  gap, gap_p = loss_q - loss, loss_pq - loss_p
  print(f"loss {loss:.4f}; W8A8 gap unplanted {gap:+.4f}, planted {gap_p:+.4f}; "
        f"inf-norm {s['max_inf_norm']:.1f} -> {s_p['max_inf_norm']:.1f}, "
        f"avg kurtosis {s['avg_kurtosis']:.2f} -> {s_p['avg_kurtosis']:.2f}")
  assert abs(gap) < 0.003  # the trained tiny model quantizes well (ppl within 0.3 %)
  assert gap_p > 0.008 and gap_p > 8 * abs(gap)
