"""Benchmark helpers: wall time and peak resident memory of this process and its children."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psutil


def tree_rss() -> int:
    proc = psutil.Process(os.getpid())
    total = proc.memory_info().rss
    for child in proc.children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.Error:
            pass
    return total


@dataclass
class Measurement:
    name: str
    seconds: float = 0.0
    peak_mb: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


@contextmanager
def measure(name: str, interval: float = 0.02) -> Iterator[Measurement]:
    """Time a block and sample the process tree's RSS; peak_mb is above the starting RSS."""
    m = Measurement(name)
    start_rss = tree_rss()
    peak = [start_rss]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], tree_rss())
            time.sleep(interval)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    t0 = time.perf_counter()
    try:
        yield m
    finally:
        m.seconds = time.perf_counter() - t0
        done.set()
        thread.join()
        m.peak_mb = (max(peak[0], tree_rss()) - start_rss) / 2**20


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


def run(fn: Callable[[], Any]) -> Any:
    return fn()
