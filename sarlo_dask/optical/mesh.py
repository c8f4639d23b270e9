"""Piecewise-affine SAR -> optical mapping (a mesh): where one affine cannot follow relief.

A regular n x n grid of control points spans the tile, point (i, j) at tile pixel
(i g, j g), g = (size - 1) / (n - 1). Each grid cell is split into two triangles along its
(i + 1, j)-(i, j + 1) diagonal, and each triangle is mapped by the exact affine through its
three control points: continuous across edges, exact at the control points. For pixel (a, r):
cell i = floor(a / g), j = floor(r / g) (the last cell takes the far edge), fa, fr the
fractions; lower triangle (fa + fr <= 1): P00 + fa (P10 - P00) + fr (P01 - P00); upper:
P11 + (1 - fa) (P01 - P11) + (1 - fr) (P10 - P11). Pure math, NumPy or CuPy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

MESH_GRIDS = (3, 5, 9, 17, 33)
"""the mesh sizes tried, each halving the cell of the one before"""


@dataclass(frozen=True)
class Mesh:
    """Control points `points` (n, n, 2): optical (column, row) of tile pixel (i g, j g)."""

    points: np.ndarray
    size: int

    @property
    def n(self) -> int:
        return int(self.points.shape[0])

    @property
    def g(self) -> float:
        """The cell's edge in tile pixels."""
        return (self.size - 1) / (self.n - 1)


def grid_points(size: int, n: int) -> np.ndarray:
    """(n * n, 2) tile pixels (azimuth, range) of an n x n grid over a size^2 tile, azimuth
    major: the order of a mesh's control points."""
    s = np.linspace(0, size - 1, n)
    a, r = np.meshgrid(s, s, indexing="ij")
    return np.column_stack([a.ravel(), r.ravel()])


def mesh_from_points(sar: np.ndarray, optical: np.ndarray, size: int) -> Mesh:
    """The mesh whose control points are `sar` (grid_points(size, n)) mapped to `optical`;
    ValueError when `sar` is not such a grid (a meta.json that does not describe a mesh)."""
    n = int(round(np.sqrt(len(sar))))
    if n < 2 or n * n != len(sar) or not np.allclose(sar, grid_points(size, n), atol=1e-6):
        raise ValueError(f"{len(sar)} control points are not an n x n grid over {size} px")
    return Mesh(np.ascontiguousarray(np.asarray(optical, dtype="float64").reshape(n, n, 2)), size)


def _cell(x: Any, g: float, n: int, xp: Any = np) -> tuple[Any, Any]:
    """(cell index, fraction) of tile coordinates `x` along one axis."""
    c = xp.clip(xp.floor(x / g), 0, n - 2)
    return c.astype(xp.int64), x / g - c


def _corners(m: Mesh, i: Any, j: Any, xp: Any = np) -> tuple[Any, Any, Any, Any]:
    """P00, P10, P01, P11 of cells (i, j): (..., 2)."""
    p = xp.asarray(m.points)
    return p[i, j], p[i + 1, j], p[i, j + 1], p[i + 1, j + 1]


def mesh_apply(m: Mesh, pts: np.ndarray) -> np.ndarray:
    """Optical (column, row) of tile pixels `pts` (N, 2); outside the tile the border cells
    extend. The same arithmetic, in the same order, as the warp's `mesh_band_coords`."""
    pts = np.asarray(pts, dtype="float64")
    i, fa = _cell(pts[:, 0], m.g, m.n)
    j, fr = _cell(pts[:, 1], m.g, m.n)
    p00, p10, p01, p11 = _corners(m, i, j)
    fa, fr = fa[:, None], fr[:, None]
    lower = (p00 + fr * (p01 - p00)) + fa * (p10 - p00)
    upper = (p11 + (1 - fr) * (p10 - p11)) + (1 - fa) * (p01 - p11)
    return np.where(fa + fr <= 1, lower, upper)


def mesh_jacobian(m: Mesh, pts: np.ndarray) -> np.ndarray:
    """(N, 2, 2) d(column, row) / d(azimuth, range) of the triangle holding each point."""
    pts = np.asarray(pts, dtype="float64")
    i, fa = _cell(pts[:, 0], m.g, m.n)
    j, fr = _cell(pts[:, 1], m.g, m.n)
    p00, p10, p01, p11 = _corners(m, i, j)
    lower = (fa + fr <= 1)[:, None]
    d_a = np.where(lower, p10 - p00, p11 - p01) / m.g
    d_r = np.where(lower, p01 - p00, p11 - p10) / m.g
    return np.stack([d_a, d_r], axis=-1)


def mesh_residual_sar_px(m: Mesh, src: np.ndarray, dst: np.ndarray) -> float:
    """Largest distance, in SAR pixels, between the mesh and the true mapping `src` -> `dst`
    (optical differences taken back through the local triangle's Jacobian)."""
    if not len(src):
        return 0.0
    diff = np.asarray(dst, dtype="float64") - mesh_apply(m, src)
    back = np.linalg.solve(mesh_jacobian(m, src), diff[..., None])[..., 0]
    return float(np.sqrt((back**2).sum(axis=1)).max())


def mesh_check_points(size: int, n: int, extra: int) -> np.ndarray:
    """Where a mesh errs most: its control points, cell centres and edge midpoints (the
    (2n - 1)^2 grid), plus an `extra` x `extra` grid (the affine's check points)."""
    return np.concatenate([grid_points(size, 2 * n - 1), grid_points(size, extra)])


def mesh_outline(m: Mesh) -> np.ndarray:
    """A convex polygon (global or mosaic pixels, as the mesh) holding the tile one SAR pixel
    wider (bilinear neighbours included): what the warp may read, so what must be fetched."""
    from scipy.spatial import ConvexHull

    s = np.concatenate([[-1.0], np.linspace(0, m.size - 1, m.n), [float(m.size)]])
    lo, hi = np.full_like(s, -1.0), np.full_like(s, float(m.size))
    border = np.concatenate(
        [np.column_stack(p) for p in ((lo, s), (hi, s), (s, lo), (s, hi))]
    )  # the extended border, at every control position (the mesh's kinks)
    pts = np.concatenate([mesh_apply(m, border), m.points.reshape(-1, 2)])
    return pts[ConvexHull(pts).vertices]


def cell_row_runs(m: Mesh, a0: int, a1: int) -> list[tuple[int, int, int]]:
    """(b0, b1, i): rows a0:a1 split where the cell row i changes, so a band's rows share
    their cells' control points along range (gathered once per band, not per pixel)."""
    rows = np.arange(a0, a1, dtype="float64")
    cells = np.clip(np.floor(rows / m.g), 0, m.n - 2).astype(np.int64)
    cuts = [0, *(np.flatnonzero(np.diff(cells)) + 1).tolist(), len(rows)]
    return [(a0 + b0, a0 + b1, int(cells[b0])) for b0, b1 in zip(cuts[:-1], cuts[1:], strict=True)]


def mesh_band_coords(m: Mesh, a0: int, a1: int, i: int, xp: Any) -> tuple[Any, Any]:
    """(column, row), each (a1 - a0, size), of tile rows a0:a1, all in cell row `i`.

    Per pixel only two multiply-adds per triangle and a select: the control points are
    gathered once per column for the band. Same values as `mesh_apply`, on any device.
    """
    g, size = m.g, m.size
    fa = xp.arange(a0, a1, dtype=xp.float64)[:, None] / g - i
    j, fr = _cell(xp.arange(size, dtype=xp.float64), g, m.n, xp)
    p00, p10, p01, p11 = _corners(m, i, j, xp)
    lower = fa + fr <= 1
    out = []
    for k in (0, 1):
        q00, q10, q01, q11 = p00[:, k], p10[:, k], p01[:, k], p11[:, k]
        low = (q00 + fr * (q01 - q00)) + fa * (q10 - q00)
        up = (q11 + (1 - fr) * (q10 - q11)) + (1 - fa) * (q01 - q11)
        out.append(xp.where(lower, low, up))
    return out[0], out[1]
