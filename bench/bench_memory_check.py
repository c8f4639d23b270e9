"""The scene stage's memory check against what its resampling tasks really hold.

    python bench/bench_memory_check.py [--size 2048] [--dir .bench]

For simulated scenes (0.4 m downsampled to 0.8 m, and 1.6 m with a skewed spectrum
upsampled to 0.8 m), runs one task of each resampling pass on a real block as the worker
does (`standardize._resample_lines`) and measures its peak: numpy's allocations through
tracemalloc (the input block included), and the resident memory above the start (/proc
VmHWM, the block added; it reads low: the task reuses pages the block's read freed).
Prints the check's estimate (standardize.task_peaks) over each measured peak: a ratio >= 1
means the estimate bounds the peak; near 1, it refuses little that would fit. The old check
(4 copies of the input block) is printed beside it.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from common import measure  # noqa: E402


def simulate(path: Path, size: int, spacing: float, skew: tuple) -> Path:
    from sarlo_dask.sim.scene import SimulationSpec, simulate_scene

    if not path.exists():
        spec = SimulationSpec(
            rows=size, cols=size, row_spacing=spacing, col_spacing=spacing,
            col_deltakcoa=skew, n_targets=4,
        )  # fmt: skip
        simulate_scene(path, spec)
    return path


def passes(url: str, cfg):
    """For each pass: (name, a function making its input block, the task's arguments)."""
    from sarlo_dask.geometry.sicd import open_sicd, sicd_from_xml
    from sarlo_dask.stages.standardize import _poly, off_axis_poly, plan_scene

    scene = open_sicd(url, cfg.chunk_range)
    sicd = sicd_from_xml(scene.attrs["sicd_xml"])
    plan_rg, plan_az = plan_scene(sicd, cfg, url)
    grid = sicd.Grid
    p_row, p_col = _poly(grid.Row), _poly(grid.Col)
    s_row, s_col = int(grid.Row.Sgn), int(grid.Col.Sgn)
    p_row2 = off_axis_poly(p_col, p_row, 1, s_col, s_row)
    rows = scene.slc.data.T  # (range, azimuth) in blocks of chunk_range range lines
    m2 = min(cfg.chunk_azimuth, plan_az.n_out)
    rng = np.random.default_rng(0)

    def range_block() -> np.ndarray:  # a rechunked block of the azimuth pass's output
        shape = (m2, plan_rg.n_in)
        re, im = rng.standard_normal(shape, np.float32), rng.standard_normal(shape, np.float32)
        return (re + 1j * im).astype(np.complex64)

    return sicd, [
        (
            "chunk_range",
            lambda: np.asarray(rows.blocks[0].compute()),
            (
                plan_rg.positions_in()[: min(cfg.chunk_range, plan_rg.n_in)],
                plan_az,
                p_col,
                s_col,
                1,
            ),
        ),
        ("chunk_azimuth", range_block, (plan_az.positions_out()[:m2], plan_rg, p_row2, s_row, 0)),
    ]


def measured(make, args) -> tuple[int, int]:
    """(tracemalloc peak, RSS peak) bytes of one resampling task, its input block included."""
    from sarlo_dask.stages.standardize import _resample_lines

    tracemalloc.start()
    block = make()
    gc.collect()  # what reading the block left in reference cycles is no part of the task
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]  # the block and what the read cached
    out = _resample_lines(block, *args)
    traced = tracemalloc.get_traced_memory()[1] - before + block.nbytes
    tracemalloc.stop()
    del out
    block = make()
    gc.collect()
    with measure("task") as m:
        out = _resample_lines(block, *args)
    del out
    return traced, int(m.peak_mb * 2**20) + block.nbytes


def main() -> None:
    from sarlo_dask.config import StandardizeConfig
    from sarlo_dask.stages.standardize import task_peaks

    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--dir", default=".bench")
    a = ap.parse_args()
    folder = Path(a.dir)
    folder.mkdir(exist_ok=True)
    cfg = StandardizeConfig(chunk_range=512, chunk_azimuth=512)
    cases = {
        "0.4 m -> 0.8 m": simulate(folder / f"mem_fine_{a.size}.nitf", a.size, 0.4, ((0.0,),)),
        "1.6 m skewed -> 0.8 m": simulate(
            folder / f"mem_coarse_{a.size // 2}.nitf", a.size // 2, 1.6, ((0.05, 1e-4),)
        ),
    }
    print(f"{'scene':24s} {'pass':14s} {'estimate MB':>12s} {'traced MB':>10s} "
          f"{'RSS MB':>8s} {'est/traced':>11s} {'est/RSS':>8s} {'old MB':>8s}")  # fmt: skip
    for label, path in cases.items():
        sicd, tasks = passes(str(path), cfg)
        peaks = task_peaks(sicd, cfg)
        for name, make, args in tasks:
            estimate, lines, n_in, _ = peaks[name]
            traced, rss = measured(make, args)
            old = lines * n_in * 8 * 4  # the earlier check: 4 copies of the input block
            print(
                f"{label:24s} {name:14s} {estimate / 2**20:12.1f} {traced / 2**20:10.1f} "
                f"{rss / 2**20:8.1f} {estimate / traced:10.4f}x {estimate / rss:7.2f}x "
                f"{old / 2**20:8.1f}"
            )


if __name__ == "__main__":
    main()
