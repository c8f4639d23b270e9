"""Affine SAR -> optical mapping by least squares, and the bilinear inverse warp (one gather)."""

from __future__ import annotations

from typing import Any

import numpy as np

from sarlo_dask.resample import array_module


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


def warp_bilinear(image: Any, valid: Any, a: np.ndarray, size: int) -> tuple[Any, Any]:
    """Sample `image` (H, W, C) at A @ [azimuth, range, 1] for every pixel of a size^2 tile.

    A maps tile pixel (azimuth, range) to image (column, row). Pixels whose four neighbours
    are not all inside the image and valid are 0 and invalid: nothing is made up.
    """
    xp = array_module(image)
    h, w = image.shape[:2]
    ai = xp.arange(size, dtype=xp.float64)[:, None]
    ri = xp.arange(size, dtype=xp.float64)[None, :]
    col = a[0, 0] * ai + a[0, 1] * ri + a[0, 2]
    row = a[1, 0] * ai + a[1, 1] * ri + a[1, 2]
    # a least-squares fit puts exact integers at 0.9999999: snap them, so a zero-weight
    # neighbour never decides a pixel's validity
    col = xp.where(xp.abs(col - xp.rint(col)) < 1e-6, xp.rint(col), col)
    row = xp.where(xp.abs(row - xp.rint(row)) < 1e-6, xp.rint(row), row)
    c0 = xp.floor(col)
    r0 = xp.floor(row)
    fc = (col - c0).astype(xp.float32)[..., None]
    fr = (row - r0).astype(xp.float32)[..., None]
    inside = (c0 >= 0) & (r0 >= 0) & (c0 + 1 <= w - 1) & (r0 + 1 <= h - 1)
    c0i = xp.where(inside, c0, 0).astype(xp.int64)
    r0i = xp.where(inside, r0, 0).astype(xp.int64)
    flat = image.reshape(h * w, -1)
    vflat = valid.reshape(-1)
    idx = r0i * w + c0i
    corners = (idx, idx + 1, idx + w, idx + w + 1)
    ok = inside & vflat[corners[0]] & vflat[corners[1]] & vflat[corners[2]] & vflat[corners[3]]
    p00, p01, p10, p11 = (flat[i].astype(xp.float32) for i in corners)
    top = p00 * (1 - fc) + p01 * fc
    bottom = p10 * (1 - fc) + p11 * fc
    out = xp.rint(top * (1 - fr) + bottom * fr)
    out = xp.where(ok[..., None], out, 0).astype(xp.uint8)
    return out, ok
