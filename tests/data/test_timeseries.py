"""Time series data: CSV loader (ETT layout), splits, train-only standardisation, windows, grain."""
import numpy as np
import pytest

from outeffhop_jax.data import timeseries as ts


def _write_csv(path, values, names=("HUFL", "MUFL", "OT")):
  lines = ["date," + ",".join(names)]
  for i, row in enumerate(values):
    cells = ["" if np.isnan(v) else f"{v:.6f}" for v in row]
    lines.append(f"2016-07-01 {i % 24:02d}:00:00," + ",".join(cells))
  path.write_text("\n".join(lines) + "\n")
  return str(path)


def test_csv_loader_reads_series_and_fills_gaps(tmp_path):
  values = np.arange(30, dtype=np.float64).reshape(10, 3)
  values[4, 1] = np.nan
  path = _write_csv(tmp_path / "ETTh_small.csv", values)
  got, names = ts.load_csv(path)
  assert names == ["HUFL", "MUFL", "OT"] and got.shape == (10, 3) and got.dtype == np.float32
  assert got[4, 1] == got[3, 1]  # forward-filled
  only, names = ts.load_csv(path, columns=["OT"])
  np.testing.assert_array_equal(only[:, 0], values[:, 2])
  with pytest.raises(ValueError, match=r"no column\(s\) \['XX'\]"):
    ts.load_csv(path, columns=["XX"])


def test_split_borders_ett_and_ratio():
  b = ts.split_borders(17420, "ett_hour", in_len=168)  # ETTh1 has 17,420 hourly rows
  assert b == {"train": (0, 8640), "validation": (8640 - 168, 11520), "test": (11520 - 168, 14400)}
  assert ts.split_borders(69680, "ett_minute", 96)["test"][1] == 57600
  r = ts.split_borders(1000, "ratio", 48)
  assert r == {"train": (0, 700), "validation": (652, 800), "test": (752, 1000)}
  assert ts.split_rule_for("csv:/data/ETTh1.csv") == "ett_hour"
  assert ts.split_rule_for("csv:/data/WTH.csv") == "ratio"
  with pytest.raises(ValueError, match="needs 14400 rows"):
    ts.split_borders(5000, "ett_hour", 96)


def test_standardised_with_train_statistics_only(tmp_path):
  rng = np.random.RandomState(0)
  values = rng.randn(200, 3) * [1, 5, 10] + [0, 100, -3]
  values[150:] += 50.0  # a shift after the train rows must not leak into the statistics
  path = _write_csv(tmp_path / "x.csv", values)
  s = ts.load(f"csv:{path}", in_len=12)
  np.testing.assert_allclose(s["train"].mean(0), 0, atol=1e-5)
  np.testing.assert_allclose(s["train"].std(0), 1, atol=1e-4)
  np.testing.assert_allclose(s.mean, values[:140].mean(0), rtol=1e-5)
  # Validation starts in_len rows early: its first rows are the train tail.
  np.testing.assert_array_equal(s["validation"][:12], s["train"][-12:])
  np.testing.assert_allclose(s.inverse(s["test"])[-1], values[-1], rtol=1e-4)


def test_window_dataset_eval_covers_every_window_and_train_resumes():
  array = np.arange(50, dtype=np.float32)[:, None].repeat(2, 1)
  batches = list(ts.window_dataset(array, in_len=8, out_len=4, batch_size=16, train=False,
                                   prefetch=0))
  n = ts.num_windows(50, 8, 4)
  assert n == 39 and len(batches) == ts.eval_batches_count(array, 8, 4, 16) == 3
  assert sum(b["example_mask"].sum() for b in batches) == n
  x, y = batches[0]["x"][5], batches[0]["y"][5]
  np.testing.assert_array_equal(x[:, 0], np.arange(5, 13))
  np.testing.assert_array_equal(y[:, 0], np.arange(13, 17))
  it = iter(ts.window_dataset(array, in_len=8, out_len=4, batch_size=4, train=True, prefetch=0))
  next(it)
  state = it.get_state()
  want = next(it)["x"]
  it2 = iter(ts.window_dataset(array, in_len=8, out_len=4, batch_size=4, train=True, prefetch=0))
  it2.set_state(state)
  np.testing.assert_array_equal(next(it2)["x"], want)
  assert ts.memory_bank(array, 8, 5).shape == (5, 8, 2)


def test_embedded_default_is_real_monthly_data():
  values, names = ts.embedded_series()
  assert values.shape == (526, 2) and names == ["co2", "elnino"]
  assert np.isfinite(values).all()
  assert 310 < values[0, 0] < 320 and 360 < values[-1, 0] < 375  # ppm, 1958 and 2001
