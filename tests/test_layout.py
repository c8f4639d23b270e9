"""The package's house: the README's layout names every module, the modules import each other
without a cycle (import-linter's contract in pyproject.toml, imports inside functions
included), and no module is over 400 lines."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PACKAGE = ROOT / "sarlo_dask"


def test_the_layout_section_names_every_module_and_only_those():
    """README's Layout: every module and sub-package of sarlo_dask/ named, and nothing named
    that is not there (a module added, moved or removed fails here until the README says)."""
    section = README.read_text().split("## Layout\n", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`(\w+(?:\.py|/))`", section)) - {"sarlo_dask/"}  # the root
    package = PACKAGE
    there = {p.name for p in package.glob("*.py") if p.name != "__init__.py"}
    there |= {f"{p.name}/" for p in package.iterdir() if (p / "__init__.py").exists()}
    assert named == there, {"not named": sorted(there - named), "not there": sorted(named - there)}


def test_no_import_cycle_among_the_modules():
    res = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "1 kept, 0 broken" in res.stdout


def test_no_module_over_400_lines():
    sizes = {
        str(p.relative_to(ROOT)): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")
    }
    assert not {p: n for p, n in sizes.items() if n > 400}
