"""The notebooks run top to bottom on the demo's output, as a user would open them."""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


@pytest.mark.parametrize("name", ["explore.ipynb", "report.ipynb"])
def test_notebook_runs_on_the_demo_output(name, demo, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    out, run = demo
    assert run.returncode == 0, run.stdout + run.stderr
    monkeypatch.setenv("SARLO_DEMO", str(out))
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    )
    client.execute()
    text = "".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
    )
    assert "Traceback" not in text
    if name == "explore.ipynb":
        assert "dashboard: http" in text and "complex64 (1024, 1024)" in text
    else:
        assert "SHORT" in text and "refused or incomplete" in text
