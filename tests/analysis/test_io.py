"""The experiment writers' shared JSON output."""
import json
import os

import numpy as np
import pytest

from outeffhop_jax.analysis import _io


def test_write_json_converts_numpy_and_replaces_atomically(tmp_path):
  path = str(tmp_path / "r.json")
  _io.write_json(path, {"a": np.float32(0.5), "b": np.arange(3), "c": [np.int64(7), np.bool_(True)]})
  assert json.load(open(path)) == {"a": 0.5, "b": [0, 1, 2], "c": [7, True]}
  _io.write_json(path, {"a": 1})
  assert json.load(open(path)) == {"a": 1}
  assert os.listdir(tmp_path) == ["r.json"]  # no temporary file left behind


def test_a_failed_write_keeps_the_previous_file(tmp_path):
  path = str(tmp_path / "r.json")
  _io.write_json(path, {"a": 1})
  with pytest.raises(TypeError, match="not JSON serialisable"):
    _io.write_json(path, {"a": object()})
  assert json.load(open(path)) == {"a": 1}
  assert os.listdir(tmp_path) == ["r.json"]


def test_write_results_writes_both_reports(tmp_path):
  _io.write_results(str(tmp_path), {"x": np.float64(2.0)}, "| a |\n")
  assert json.load(open(tmp_path / "results.json")) == {"x": 2.0}
  assert (tmp_path / "results.md").read_text() == "| a |\n"
