"""Benchmark helpers: wall time and peak resident memory of this process and its children.

Peak memory comes from Linux's resettable high-water mark (write 5 to /proc/PID/clear_refs,
read VmHWM from /proc/PID/status), so no sampling thread competes with the code measured.
It is the sum of each process's peak above its starting RSS (an upper bound on the
simultaneous peak of several processes).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import psutil


def _pids() -> list[int]:
    me = psutil.Process(os.getpid())
    return [me.pid] + [c.pid for c in me.children(recursive=True)]


def _status_kb(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def _reset_peak(pid: int) -> None:
    with suppress(OSError), open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")


@dataclass
class Measurement:
    name: str
    seconds: float = 0.0
    peak_mb: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


@contextmanager
def measure(name: str) -> Iterator[Measurement]:
    """Time a block; peak_mb is the peak RSS above the start, summed over the process tree."""
    m = Measurement(name)
    pids = _pids()
    start = {}
    for pid in pids:
        _reset_peak(pid)
        start[pid] = _status_kb(pid, "VmRSS")
    t0 = time.perf_counter()
    try:
        yield m
    finally:
        m.seconds = time.perf_counter() - t0
        peak = 0
        for pid in pids:
            with suppress(OSError):
                peak += max(0, _status_kb(pid, "VmHWM") - start[pid])
        m.peak_mb = peak / 1024


def table(rows: list[tuple[str, Measurement, Measurement, str]]) -> str:
    """One line per comparison: ours, baseline, speed ratio, target."""
    lines = [
        f"{'comparison':38s} {'ours s':>8s} {'base s':>8s} {'ratio':>7s} "
        f"{'ours MB':>8s} {'base MB':>8s}  target"
    ]
    for label, ours, base, target in rows:
        lines.append(
            f"{label:38s} {ours.seconds:8.2f} {base.seconds:8.2f} "
            f"{base.seconds / ours.seconds:6.2f}x {ours.peak_mb:8.0f} "
            f"{base.peak_mb:8.0f}  {target}"
        )
    return "\n".join(lines)


def pass_scenes(root: Any, prefix: str, n: int, seed: int, month: int) -> list[str]:
    """`n` simulated 1200 x 1200 scenes at 0.4 m under `root`, a satellite pass each (collected
    on day i of `month` 2025), made once and reused by later runs; their paths."""
    from pathlib import Path

    from sarlo_dask.sim.scene import SimulationSpec, simulate_scene

    urls = []
    for i in range(n):
        path = Path(root) / f"{prefix}_{i:02d}.nitf"
        if not path.exists():
            start = f"2025-{month:02d}-{1 + i:02d}T10:00:00"
            simulate_scene(
                path, SimulationSpec(1200, 1200, 0.4, 0.4, seed=seed + i, collect_start=start)
            )
        urls.append(str(path))
    return urls


RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
"""bench/results/: each benchmark's last figures as JSON, what the README's figures cite"""


def record(name: str, figures: dict[str, Any], settings: dict[str, Any]) -> str:
    """Write bench/results/NAME.json: the figures of this run (rounded as printed), the
    settings it ran with, the date and the machine; returns its path. The README cites
    figures as `VALUE<!-- bench:NAME:KEY -->` and tests/test_layout.py checks each one."""
    import json
    import platform
    import sys

    doc = {
        "benchmark": name,
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "machine": {
            "cores": os.cpu_count(),
            "memory_gb": round(psutil.virtual_memory().total / 2**30),
            "python": platform.python_version(),
            "platform": platform.platform(terse=True),
        },
        "argv": sys.argv[1:],
        "settings": settings,
        "figures": figures,
    }
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, f"{name}.json")
    with open(path, "w") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
        f.write("\n")
    print(f"figures: {path}")
    return path
