"""Execute the notebooks with small settings (nbclient), as CI does."""

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("matplotlib")
pytest.importorskip("ipykernel")

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


@pytest.mark.slow
def test_quickstart_notebook_runs(tmp_path, monkeypatch):
    plot = tmp_path / "quickstart_gp.png"
    monkeypatch.setenv("PFNJAX_QUICKSTART_STEPS", "100")  # CI-sized training
    monkeypatch.setenv("PFNJAX_QUICKSTART_PLOT", str(plot))  # keep the committed full-run plot
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    monkeypatch.setenv("XLA_FLAGS", "")  # one device in the kernel, as for a user
    nb = nbformat.read(NOTEBOOKS / "quickstart.ipynb", as_version=4)
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    assert plot.exists() and plot.stat().st_size > 10_000
    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "trained 100 steps" in text and "diabetes R^2" in text and "iris accuracy" in text
    assert not any(o.get("output_type") == "error" for c in nb.cells for o in c.get("outputs", []))
