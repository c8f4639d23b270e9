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


def _named(section: str) -> set[str]:
    """The modules and sub-packages the Layout names, as paths under sarlo_dask/: in a bullet
    that names a role folder, the modules after it are that folder's (a bullet may name a
    top-level module first, then a folder "beside it")."""
    named: set[str] = set()
    for bullet in re.split(r"\n- ", section)[1:]:
        folder = ""
        for name in re.findall(r"`(\w+(?:\.py|/))`", bullet):
            if name.endswith("/") and name != "sarlo_dask/":
                folder = name if name in ROLES else ""  # captions/, optical/: named whole
                named.add(name)
            elif name.endswith(".py"):
                named.add(folder + name)
    return named


def test_the_layout_section_names_every_module_and_only_those():
    """README's Layout: every module of sarlo_dask/ named in its role folder, every
    sub-package named, and nothing named that is not there (a module added, moved or removed
    fails here until the README says). Sub-packages without role folders (captions/,
    optical/, schemas/) are named whole."""
    section = README.read_text().split("## Layout\n", 1)[1].split("\n## ", 1)[0]
    named = _named(section)
    there = {p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py"}
    for sub in PACKAGE.iterdir():
        if (sub / "__init__.py").exists():
            there.add(f"{sub.name}/")
            if f"{sub.name}/" in ROLES:
                there |= {
                    f"{sub.name}/{m.name}" for m in sub.glob("*.py") if m.name != "__init__.py"
                }
    assert named == there, {"not named": sorted(there - named), "not there": sorted(named - there)}


ROLES = {"cli/", "sim/", "release/", "stages/", "geometry/", "driver/", "io/"}
"""the role folders, whose modules the Layout names one by one"""


def test_no_import_cycle_and_the_driver_imports_no_stage():
    res = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "3 kept, 0 broken" in res.stdout  # pyproject.toml's [tool.importlinter]


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
