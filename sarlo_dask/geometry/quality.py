"""Per-sample quality measures of a SAR tile (pure functions of its pixels).

The equivalent number of looks (ENL) by the moment estimator used by SAR tools (ESA SNAP's
and the Sentinel-1 ARD tools' speckle statistics): over a homogeneous area of intensity I,
ENL = mean(I)^2 / var(I), 1 for single-look fully developed speckle and L for L looks
averaged. A tile is rarely homogeneous as a whole, so it is cut into windows, each window
inside the valid data gives its estimate, and the tile's ENL is their median: texture,
edges and bright targets lower a window's estimate, and the median keeps them from
deciding the tile's value while they are fewer than half the windows.
"""

from __future__ import annotations

from typing import Any

import numpy as np

ENL_WINDOW = 32
"""window edge, pixels: 1024 samples, a few per cent of estimator noise in single-look speckle"""


def enl(intensity: np.ndarray, valid: np.ndarray | None = None, window: int = ENL_WINDOW) -> dict:
    """{'enl': the median of the windows' mean^2 / var, 'windows': how many gave one}
    ('enl' None, with 'reason', when no window lies wholly in valid, non-zero data)."""
    power = np.asarray(intensity, dtype="float64")
    n_a, n_r = (s // window for s in power.shape)
    if n_a == 0 or n_r == 0:
        return {"enl": None, "windows": 0, "reason": f"tile smaller than a {window} px window"}
    crop = power[: n_a * window, : n_r * window].reshape(n_a, window, n_r, window)
    blocks = crop.transpose(0, 2, 1, 3).reshape(n_a * n_r, window * window)
    ok = np.all(blocks > 0, axis=1)
    if valid is not None:
        v = np.asarray(valid, dtype=bool)[: n_a * window, : n_r * window]
        vb = v.reshape(n_a, window, n_r, window).transpose(0, 2, 1, 3).reshape(n_a * n_r, -1)
        ok &= np.all(vb, axis=1)
    blocks = blocks[ok]
    if not len(blocks):
        return {"enl": None, "windows": 0, "reason": "no window wholly in valid, non-zero data"}
    mean = blocks.mean(axis=1)
    var = blocks.var(axis=1, ddof=1)
    estimates = mean**2 / np.where(var > 0, var, np.nan)
    estimates = estimates[np.isfinite(estimates)]
    if not len(estimates):
        return {"enl": None, "windows": 0, "reason": "constant windows: no speckle to measure"}
    return {"enl": float(np.median(estimates)), "windows": int(len(estimates))}


def tile_quality(power: np.ndarray, valid: np.ndarray | None) -> dict[str, Any]:
    """meta.json's `quality` block of a tile from its intensities |z|^2 and validity mask."""
    out = enl(power, valid)
    quality: dict[str, Any] = {"enl": out["enl"], "enl_windows": out["windows"]}
    if out["enl"] is None:
        quality["enl_reason"] = out["reason"]
    return quality
