"""The README's "Use it in your own code" snippets run as written (extracted from README.md, so the
text and the tested code cannot drift apart)."""
from __future__ import annotations

import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[2] / "README.md"


def _snippets():
  text = README.read_text()
  start = text.index("## Use it in your own code")
  end = text.index("\n## ", start + 1)
  return re.findall(r"```python\n(.*?)```", text[start:end], flags=re.S)


def test_three_snippets_present():
  assert len(_snippets()) == 3


@pytest.mark.parametrize("index", range(3))
def test_snippet_runs(index):
  code = _snippets()[index]
  exec(compile(code, f"README.md snippet {index + 1}", "exec"), {"__name__": f"readme_{index}"})
