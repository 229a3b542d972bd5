"""Execute the notebooks with small settings (nbclient), as CI does."""

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("matplotlib")
pytest.importorskip("ipykernel")

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def _execute(name: str, tmp_path, monkeypatch):
    """Run a notebook in a fresh kernel on one CPU device (as for a user) and return it executed."""
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    monkeypatch.setenv("XLA_FLAGS", "")
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    return nb


@pytest.mark.slow
def test_quickstart_notebook_runs(tmp_path, monkeypatch):
    plot = tmp_path / "quickstart_gp.png"
    monkeypatch.setenv("PFNJAX_QUICKSTART_STEPS", "50")  # CI-sized training
    monkeypatch.setenv("PFNJAX_QUICKSTART_PLOT", str(plot))  # keep the committed full-run plot
    nb = _execute("quickstart.ipynb", tmp_path, monkeypatch)
    assert plot.exists() and plot.stat().st_size > 10_000
    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "trained 50 steps" in text and "diabetes R^2" in text and "iris accuracy" in text
    assert not any(o.get("output_type") == "error" for c in nb.cells for o in c.get("outputs", []))


@pytest.mark.slow
def test_bayesopt_notebook_runs(tmp_path, monkeypatch):
    plot = tmp_path / "bayesopt_branin.png"
    monkeypatch.setenv("PFNJAX_BO_ITERS", "6")  # CI-sized: 6 BO steps, 2 seeds
    monkeypatch.setenv("PFNJAX_BO_SEEDS", "2")
    monkeypatch.setenv("PFNJAX_BO_PLOT", str(plot))  # keep the committed full-run plot
    nb = _execute("bayesopt.ipynb", tmp_path, monkeypatch)
    assert plot.exists() and plot.stat().st_size > 10_000
    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "model bo-hebo" in text and "best value" in text and "final log10 regret" in text
    assert not any(o.get("output_type") == "error" for c in nb.cells for o in c.get("outputs", []))
