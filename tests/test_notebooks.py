"""The notebooks run top to bottom on the demo's output, as the README's command runs them."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


def readme_command() -> str:
    """The README's command that executes the notebooks (after its `pip install` step)."""
    text = (ROOT / "README.md").read_text()
    line = next(x for x in text.splitlines() if "jupyter nbconvert" in x)
    return line.split("&&", 1)[1].strip()


def test_the_readme_command_executes_the_notebooks_on_the_demo_output(demo):
    nbformat = pytest.importorskip("nbformat")
    out, run = demo
    assert run.returncode == 0, run.stdout + run.stderr
    # as in a clone where the demo ran: notebooks/ beside demo-out/, the command run from there
    shutil.copytree(NOTEBOOKS, out.parent / "notebooks", dirs_exist_ok=True)
    cmd = readme_command()
    assert re.fullmatch(r"jupyter nbconvert --to notebook --execute .*", cmd), cmd
    res = subprocess.run(
        cmd.replace("jupyter", f"{Path(sys.executable).parent}/jupyter", 1),
        shell=True,
        cwd=out.parent,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    for name in ("explore.ipynb", "report.ipynb"):
        nb = nbformat.read(out / "notebooks" / name, as_version=4)
        cells = [c for c in nb.cells if c.cell_type == "code"]
        assert all(c.get("execution_count") for c in cells), name  # every cell ran
        text = "".join(o.get("text", "") for c in cells for o in c.get("outputs", []))
        assert "Traceback" not in text
        if name == "explore.ipynb":
            assert "dashboard: http" in text and "complex64 (1024, 1024)" in text
        else:
            assert "SHORT" in text and "refused or incomplete" in text
