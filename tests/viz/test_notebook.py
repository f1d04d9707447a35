"""notebooks/energy_landscapes.ipynb runs top to bottom (small sizes) and shows its figures."""
import os
import pathlib

import nbclient
import nbformat

NOTEBOOK = pathlib.Path(__file__).resolve().parents[2] / "notebooks" / "energy_landscapes.ipynb"


def test_notebook_executes(tmp_path, monkeypatch):
  monkeypatch.setenv("OUTEFFHOP_NB_SMALL", "1")  # the kernel inherits the environment
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  # The kernel runs in tmp_path (outside the checkout), so its install cell takes the "already
  # installed" branch; this checkout first on its path makes that hold however the package is
  # installed (a worker once saw find_spec miss the editable install; the cell's branches have
  # their own test below).
  root = str(NOTEBOOK.parents[1])
  monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
      [root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
  nb = nbformat.read(NOTEBOOK, as_version=4)
  nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                          resources={"metadata": {"path": str(tmp_path)}}).execute()
  outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
  assert not [o for o in outputs if o.get("output_type") == "error"]
  images = [o for o in outputs if "image/png" in o.get("data", {})]
  assert len(images) >= 7  # every figure cell rendered a PNG
  assert any("small run" in o.get("text", "") for o in outputs)


def _run_install_cell(cwd, hide_package: bool):
  """The notebook's first code cell in a fresh interpreter at `cwd`; `hide_package` makes
  outeffhop_jax look uninstalled (find_spec -> None), as in a fresh Colab runtime."""
  import subprocess
  import sys
  nb = nbformat.read(NOTEBOOK, as_version=4)
  cell = next(c for c in nb.cells if c.cell_type == "code").source
  prelude = ("import importlib.util as u\n_f = u.find_spec\n"
             "u.find_spec = lambda n, *a: None if n == 'outeffhop_jax' else _f(n, *a)\n"
             if hide_package else "")
  return subprocess.run([sys.executable, "-c", prelude + cell], cwd=cwd, capture_output=True,
                        text=True, timeout=60)


def test_install_cell_uses_its_checkout_or_says_what_to_set(tmp_path):
  root = NOTEBOOK.parents[1]
  inside = _run_install_cell(NOTEBOOK.parent, hide_package=False)
  assert inside.returncode == 0 and f"from the checkout {root}" in inside.stdout, inside.stderr
  outside = _run_install_cell(tmp_path, hide_package=True)
  assert outside.returncode != 0
  assert "set OUTEFFHOP_SOURCE" in outside.stderr and "wheel" in outside.stderr
