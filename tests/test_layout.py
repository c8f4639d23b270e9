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


def test_no_import_cycle_and_the_driver_imports_no_stage():
    res = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "2 kept, 0 broken" in res.stdout  # pyproject.toml's [tool.importlinter]


def test_no_module_over_400_lines():
    sizes = {
        str(p.relative_to(ROOT)): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")
    }
    assert not {p: n for p, n in sizes.items() if n > 400}


def test_the_readme_figures_are_the_recorded_benchmark_output():
    """Each figure the README cites as `VALUE<!-- bench:NAME:KEY -->` is KEY of the figures
    bench/NAME's last run wrote to bench/results/NAME.json (rounded as recorded)."""
    import json

    cited = re.findall(r"([-\d.]+)\s*(?:x|%|s|MB)?<!-- bench:(\w+):(\w+) -->", README.read_text())
    assert cited, "the README cites no recorded figure"
    for value, name, key in cited:
        results = ROOT / "bench" / "results" / f"{name}.json"
        assert results.exists(), f"README cites {name}:{key}, but bench/{name} recorded nothing"
        figures = json.loads(results.read_text())["figures"]
        assert key in figures, f"{results.name} has no figure {key}"
        assert float(value) == figures[key], f"README says {value} for {name}:{key}, {figures[key]}"
