"""Warp benchmark: the mesh (piecewise affine) warp's cost per 1024 px tile against the affine's.

    python bench/bench_warp.py [--size 1024] [--tiles 20]

One core (one process, one thread). Both warps sample the same RGBA mosaic through
`warp.warp_bilinear`: the baseline through one affine, ours through a mesh of 9 x 9 and
33 x 33 control points (the affine's points bent by a smooth bump, as relief bends them).
The gather is shared; the ratio is what the mesh's per-pixel coordinates cost.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--tiles", type=int, default=20)
    args = ap.parse_args()

    from common import measure, table

    from sarlo_dask.optical.mesh import grid_points, mesh_from_points
    from sarlo_dask.optical.warp import apply_affine, rgba, warp_bilinear

    size = args.size
    rng = np.random.default_rng(0)
    h = w = int(size * 1.6)  # a zoom-19 mosaic over a 0.8 m tile at mid latitude, about
    image = rgba(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), np.ones((h, w), bool))
    a = np.array([[0.02, 1.18, 200.3], [-1.21, 0.03, h - 150.7]])  # north-up, rotated 90 deg
    meshes = {}
    for n in (9, 33):
        sar = grid_points(size, n)
        c = (sar - size / 2) / (size / 4)
        bump = 10.0 * np.exp(-(c**2).sum(axis=1) / 2)[:, None]  # 10 px, relief-like
        meshes[n] = mesh_from_points(sar, apply_affine(a, sar) + bump, size)
    warp_bilinear(image, a, size)  # first-call costs outside the timings
    rows = []
    with measure("affine") as base:
        for _ in range(args.tiles):
            warp_bilinear(image, a, size)
    for n, mesh in meshes.items():
        warp_bilinear(image, mesh, size)
        with measure(f"mesh {n}") as ours:
            for _ in range(args.tiles):
                warp_bilinear(image, mesh, size)
        rows.append((f"mesh {n}x{n} vs affine ({args.tiles} tiles)", ours, base, "<= 1.5x cost"))
    print(f"{args.tiles} warps of {size} x {size} px from a {h} x {w} mosaic, one core")
    print(f"affine: {1000 * base.seconds / args.tiles:6.1f} ms per tile")
    for label, ours, _, _ in rows:
        print(f"{label.split(' vs')[0]}: {1000 * ours.seconds / args.tiles:6.1f} ms per tile")
    print(table(rows))
    print("(ratio < 1: the mesh warp is slower by 1 / ratio)")


if __name__ == "__main__":
    main()
