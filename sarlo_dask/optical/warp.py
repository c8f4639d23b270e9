"""Affine SAR -> optical mapping by least squares, and the bilinear inverse warp (one gather)
through an affine or a mesh (`mesh.Mesh`: piecewise affine)."""

from __future__ import annotations

from typing import Any

import numpy as np

from sarlo_dask.geometry.gpu import array_module
from sarlo_dask.optical.mesh import Mesh, cell_row_runs, mesh_band_coords


def fit_affine(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """(2, 3) A with dst ~ A @ [src, 1], least squares; src and dst are (N, 2), N >= 3."""
    src = np.asarray(src, dtype="float64")
    design = np.column_stack([src, np.ones(len(src))])
    coef, *_ = np.linalg.lstsq(design, np.asarray(dst, dtype="float64"), rcond=None)
    return np.ascontiguousarray(coef.T)


def apply_affine(a: np.ndarray, pts: np.ndarray) -> np.ndarray:
    pts = np.asarray(pts, dtype="float64")
    return pts @ a[:, :2].T + a[:, 2]


def residual_sar_px(a: np.ndarray, src: np.ndarray, dst: np.ndarray) -> float:
    """Largest distance, in SAR pixels, between the affine and the true mapping at `src`."""
    diff = np.asarray(dst, dtype="float64") - apply_affine(a, src)
    back = np.linalg.solve(a[:, :2], diff.T).T
    return float(np.sqrt((back**2).sum(axis=1)).max()) if len(back) else 0.0


def rgba(image: Any, valid: Any) -> Any:
    """(H, W, 4) uint8: RGB with alpha 255 where valid, 0 elsewhere (the warp's input)."""
    xp = array_module(image)
    out = xp.empty(image.shape[:2] + (4,), dtype=xp.uint8)
    out[..., :3] = image[..., :3]
    out[..., 3] = xp.where(valid, 255, 0)
    return out


def warp_bilinear(image: Any, mapping: np.ndarray | Mesh, size: int) -> tuple[Any, Any]:
    """Sample an RGBA `image` (H, W, 4) through `mapping` for a size^2 tile.

    `mapping` takes tile pixel (azimuth, range) to image (column, row): an affine A (2, 3),
    A @ [azimuth, range, 1], or a mesh (piecewise affine). Only the coordinates differ: the
    gather is one. One gather per bilinear corner: each RGBA pixel is read as one uint32, its
    alpha saying whether it is valid. Pixels whose four neighbours are not all inside and
    valid are 0 and invalid: nothing is made up. Returns (RGB uint8 (size, size, 3), a view
    of packed RGBA; valid bool (size, size)).

    The interpolation is fixed-point on the packed pixels (weights in 1/256, two 8-bit
    channels per 16-bit lane of a uint32): within two grey levels of float bilinear (two
    roundings), half the time of it on the CPU, and the same integers on every device.
    """
    xp = array_module(image)
    h, w = image.shape[:2]
    if h * w >= 2**31:
        raise ValueError(f"mosaic of {h} x {w} px is too large to index with int32")
    flat = xp.ascontiguousarray(image).view(xp.uint32).reshape(-1)
    out = xp.empty((size, size), dtype=xp.uint32)
    ok = xp.empty((size, size), dtype=bool)
    # on the CPU, bands of rows keep the temporaries in cache; the GPU takes the tile at once
    band = size if xp is not np else _CPU_BAND_ROWS
    for a0 in range(0, size, band):
        a1 = min(a0 + band, size)
        if isinstance(mapping, Mesh):  # bands split where the mesh's cell row changes
            for b0, b1, i in cell_row_runs(mapping, a0, a1):
                col, row = mesh_band_coords(mapping, b0, b1, i, xp)
                out[b0:b1], ok[b0:b1] = _gather(flat, h, w, col, row)
        else:
            out[a0:a1], ok[a0:a1] = _gather(flat, h, w, *_affine_coords(mapping, a0, a1, size, xp))
    # RGB as a view of the packed pixels: encode_image hands them to PIL without a copy
    return out.view(xp.uint8).reshape(size, size, 4)[..., :3], ok


_CPU_BAND_ROWS = 32
_LANES = 0x00FF00FF
_HALF = 0x00800080  # 0.5 in each lane's 1/256 units: the shift rounds


def _lerp(x: Any, y: Any, f: Any, g: Any) -> Any:
    """(x g + y f) / 256 rounded, per 16-bit lane (f + g = 256, lanes <= 255: no carry)."""
    return ((x * g + y * f + _HALF) >> 8) & _LANES


def _affine_coords(a: np.ndarray, a0: int, a1: int, size: int, xp: Any) -> tuple[Any, Any]:
    """(column, row), each (a1 - a0, size), of tile rows a0:a1 under the affine `a`."""
    ai = xp.arange(a0, a1, dtype=xp.float64)[:, None]
    ri = xp.arange(size, dtype=xp.float64)[None, :]
    col = (a[0, 0] * ai + a[0, 2]) + a[0, 1] * ri
    row = (a[1, 0] * ai + a[1, 2]) + a[1, 1] * ri
    return col, row


def _gather(flat: Any, h: int, w: int, col: Any, row: Any) -> tuple[Any, Any]:
    """Packed RGBA and validity at image coordinates (col, row) (2-D, float64), bilinear from
    the mosaic as flat uint32 RGBA: the warp's one gather, whatever made the coordinates."""
    xp = array_module(flat)
    shape = col.shape
    # a least-squares fit puts exact integers at 0.9999999: the floor takes them as 1 with a
    # zero weight on 0, so a zero-weight neighbour never decides a pixel's validity
    c0 = xp.floor(col + 1e-6)
    r0 = xp.floor(row + 1e-6)
    fc = (xp.maximum(col - c0, 0) * 256 + 0.5).astype(xp.uint32).reshape(-1)
    fr = (xp.maximum(row - r0, 0) * 256 + 0.5).astype(xp.uint32).reshape(-1)
    inside = ((c0 >= 0) & (r0 >= 0) & (c0 <= w - 2) & (r0 <= h - 2)).reshape(-1)
    idx = xp.where(inside, r0.reshape(-1) * w + c0.reshape(-1), 0).astype(xp.int32)
    p00, p01, p10, p11 = (flat[idx + offset] for offset in (0, 1, w, w + 1))
    ok = inside & ((p00 & p01 & p10 & p11) >> 24 == 255)  # all four alphas 255
    gc, gr = 256 - fc, 256 - fr
    # lanes R, B (even bytes) and G, A (odd bytes)
    even = _lerp(
        _lerp(p00 & _LANES, p01 & _LANES, fc, gc), _lerp(p10 & _LANES, p11 & _LANES, fc, gc), fr, gr
    )
    p00, p01, p10, p11 = ((p >> 8) & _LANES for p in (p00, p01, p10, p11))
    odd = _lerp(_lerp(p00, p01, fc, gc), _lerp(p10, p11, fc, gc), fr, gr)
    pix = even | (odd << 8)
    pix[~ok] = 0
    return pix.reshape(shape), ok.reshape(shape)
