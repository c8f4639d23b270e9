"""GPU vs CPU on the same machine: the scene stage's resampling and the optical warp.

    python bench/bench_gpu.py [--size 16384] [--tile 1024]

Standardize: a size x size scene at 0.4 m (SICD metadata from the simulator, complex64
speckle in memory: 2 GiB at 16,384^2) resampled to 0.8 m through `standardize_scene`,
computed with Dask's threads on every core (device 'cpu') and on the GPU (device 'cuda', the
same graph; moving blocks in and out is counted). Tie points are projected by sarpy on the
CPU in both. Warp: every tile x tile window of the scene warped from its part of an RGBA
mosaic, on every core (a thread per core) and on the GPU (each window's mosaic moved in and
its result moved out, as tile tasks do). Prints both ratios (target >= 10x). Without a CUDA
device it says so and exits 0.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np


def scene_in_memory(size: int, chunk: int) -> Any:
    """The xarray Dataset `sicd.open_sicd` would give for a simulated scene, in memory."""
    import dask.array as da

    from sarlo_dask.geometry.sicd import scene_dataset
    from sarlo_dask.sim.scene import SimulationSpec
    from sarlo_dask.sim.sicd import build_sicd

    sicd = build_sicd(SimulationSpec(rows=size, cols=size, row_spacing=0.4, col_spacing=0.4))
    rng = np.random.default_rng(0)
    data = np.empty((size, size), np.complex64)
    for a0 in range(0, size, chunk):  # (azimuth, range), row block by row block
        block = rng.standard_normal((min(chunk, size - a0), size, 2), dtype=np.float32)
        data[a0 : a0 + chunk] = block.view(np.complex64)[..., 0]
    return scene_dataset(da.from_array(data, chunks=(chunk, -1)), sicd, "memory/bench.nitf")


def time_standardize(ds: Any, device: str, workers: int) -> float:
    import dask

    from sarlo_dask.config import StandardizeConfig
    from sarlo_dask.stages.standardize import standardize_scene

    out = standardize_scene(ds, StandardizeConfig(device=device))
    with dask.config.set(scheduler="threads", num_workers=workers):
        t0 = time.perf_counter()
        out.compute()
        return time.perf_counter() - t0


def windows(size: int, tile: int) -> list[tuple[int, int]]:
    return [
        (a, r) for a in range(0, size - tile + 1, tile) for r in range(0, size - tile + 1, tile)
    ]


def warp_all(mosaic: np.ndarray, size: int, tile: int, device: str, workers: int) -> float:
    """Seconds to warp every window; the affine turns each by 3 degrees about its corner."""
    from sarlo_dask.geometry.gpu import to_device, to_host
    from sarlo_dask.optical.warp import warp_bilinear

    c, s = np.cos(np.radians(3)), np.sin(np.radians(3))
    pad = int(tile * 0.06) + 2

    def one(corner: tuple[int, int]) -> None:
        a0, r0 = corner
        part = mosaic[a0 : a0 + tile + 2 * pad, r0 : r0 + tile + 2 * pad]
        a = np.array([[s, c, pad], [c, -s, pad + tile * s]])  # (azimuth, range) -> (col, row)
        if device == "cuda":
            image, ok = warp_bilinear(to_device(part), a, tile)
            to_host(image), to_host(ok)
        else:
            warp_bilinear(part, a, tile)

    todo = windows(size, tile)
    t0 = time.perf_counter()
    if workers == 1:
        for corner in todo:
            one(corner)
    else:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(one, todo))
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=16384)
    ap.add_argument("--tile", type=int, default=1024)
    args = ap.parse_args()

    from sarlo_dask.geometry.gpu import gpu_count

    if gpu_count() == 0:
        print("no CUDA device (or no CuPy): nothing to compare; run this on a GPU machine")
        sys.exit(0)
    cores = os.cpu_count() or 1
    size, tile = args.size, args.tile

    warm = scene_in_memory(2048, 1024)  # CUDA context, cuFFT plans, imports
    time_standardize(warm, "cuda", 4)
    time_standardize(warm, "cpu", cores)
    ds = scene_in_memory(size, 1024)
    gpu_s = time_standardize(ds, "cuda", 4)
    cpu_s = time_standardize(ds, "cpu", cores)

    rng = np.random.default_rng(1)
    side = size + 2 * (int(tile * 0.06) + 2)
    mosaic = rng.integers(0, 256, (side, side, 4), dtype=np.uint8)
    mosaic[..., 3] = 255
    warp_all(mosaic, 2 * tile, tile, "cuda", 1)  # warm
    warp_gpu = warp_all(mosaic, size, tile, "cuda", 1)
    warp_cpu = warp_all(mosaic, size, tile, "cpu", cores)
    warp_one = warp_all(mosaic, min(size, 4 * tile), tile, "cpu", 1) * (size // tile) ** 2 / 16

    import cupy

    name = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
    n = len(windows(size, tile))
    print(f"{size} x {size} scene at 0.4 m -> 0.8 m; {name} vs {cores} CPU cores")
    print(f"standardize, CPU ({cores} threads): {cpu_s:7.2f} s")
    print(
        f"standardize, GPU:                {gpu_s:7.2f} s   {cpu_s / gpu_s:6.1f}x  (target >= 10x)"
    )
    print(f"warp {n} tiles of {tile}^2, CPU ({cores} threads): {warp_cpu:7.2f} s")
    print(f"warp, CPU one core (from 16 tiles):  {warp_one:7.2f} s")
    print(
        f"warp, GPU (transfers counted):       {warp_gpu:7.2f} s   "
        f"{warp_cpu / warp_gpu:6.1f}x all cores, {warp_one / warp_gpu:6.1f}x one core "
        "(target >= 10x)"
    )


if __name__ == "__main__":
    main()
