"""``notebooks/explore_sweep.ipynb`` runs top to bottom on a real (tiny) sweep."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from test_multirun import tiny_sweep  # noqa: F401  (the shared sweep fixture)

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "explore_sweep.ipynb"


def test_committed_notebook_has_no_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


@pytest.mark.slow
def test_notebook_runs_on_a_sweep(tiny_sweep, monkeypatch):  # noqa: F811
    monkeypatch.setenv("GENRE_CLS_SWEEP", str(tiny_sweep))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") + str(o.get("data", {}).get("text/markdown", "")) for o in outputs)
    assert "| model | epochs | optim |" in text and "failed: " in text
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 4  # accuracy grid, curves, confusion matrix, feature sequences
    assert "(10, 16, 33)" in text + "".join(str(o.get("data", {}).get("text/plain", "")) for o in outputs)
