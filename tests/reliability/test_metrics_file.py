"""Metrics: a record never glues onto a partial last line, and the reader skips damaged lines."""
import json

import pytest

from outeffhop_jax.train import load_metrics
from outeffhop_jax.train.metrics import MetricWriter


def test_records_start_on_a_fresh_line_and_damaged_lines_are_skipped(tmp_path):
  good = {"step": 2, "time": 1.0, "train/loss": 5.0}
  # A run killed mid-write: one good record, one garbage line, then half a record (no newline).
  (tmp_path / "metrics.jsonl").write_text(json.dumps(good) + "\n" + "\x00\x00garbage\n"
                                          + '{"step": 4, "time": 2.0, "train/lo')
  writer = MetricWriter(str(tmp_path), tensorboard=False)
  writer.write(6, {"loss": 4.5}, prefix="train/")
  writer.close()
  lines = (tmp_path / "metrics.jsonl").read_text().split("\n")
  assert lines[2] == '{"step": 4, "time": 2.0, "train/lo'  # the partial line, left as it was
  new = json.loads(lines[3])  # the new record has a line of its own
  assert new["step"] == 6 and new["train/loss"] == 4.5 and lines[4:] == [""]

  with pytest.warns(UserWarning, match=r"skipped 2 damaged line\(s\) \(line 2, 3\)"):
    records = load_metrics(str(tmp_path))
  assert [r["step"] for r in records] == [2, 6]
  assert records[0] == good
