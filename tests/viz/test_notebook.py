"""notebooks/energy_landscapes.ipynb runs top to bottom (small sizes) and shows its figures."""
import pathlib

import nbclient
import nbformat

NOTEBOOK = pathlib.Path(__file__).resolve().parents[2] / "notebooks" / "energy_landscapes.ipynb"


def test_notebook_executes(tmp_path, monkeypatch):
  monkeypatch.setenv("OUTEFFHOP_NB_SMALL", "1")  # the kernel inherits the environment
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  nb = nbformat.read(NOTEBOOK, as_version=4)
  nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                          resources={"metadata": {"path": str(tmp_path)}}).execute()
  outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
  assert not [o for o in outputs if o.get("output_type") == "error"]
  images = [o for o in outputs if "image/png" in o.get("data", {})]
  assert len(images) >= 7  # every figure cell rendered a PNG
  assert any("small run" in o.get("text", "") for o in outputs)
