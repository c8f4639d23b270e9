"""Per-sample quality measures of a SAR tile (pure functions of its pixels).

The equivalent number of looks (ENL) by the moment estimator used by SAR tools (ESA SNAP's
and the Sentinel-1 ARD tools' speckle statistics): over a homogeneous area of intensity I,
ENL = mean(I)^2 / var(I), 1 for single-look fully developed speckle and L for L looks
averaged. A tile is rarely homogeneous as a whole, so it is cut into windows, each window
inside the valid data gives its estimate, and the tile's ENL is their median: texture,
edges and bright targets lower a window's estimate, and the median keeps them from
deciding the tile's value while they are fewer than half the windows.

Beside it: the share of valid pixels whose amplitude reaches the source pixel type's full
scale (integer pixel types only; float pixels have none). It is measured on the resampled
tile: a saturated area of the source keeps its amplitude at full scale through resampling
and deskew (which rotate the phase, so a component test would not do), a lone clipped pixel
is smeared below it and a perceptual hash of the preview (the DCT hash of
imagehash's `phash`: 32 x 32 Lanczos thumbnail, the 8 x 8 lowest frequencies against their
median, 16 hex digits), which the release compares to find near duplicates.
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


FULL_SCALE = {"RE16I_IM16I": 32767.0, "AMP8I_PHS8I": 255.0}
"""the largest magnitude of one component (RE16I_IM16I) or of the amplitude code
(AMP8I_PHS8I, before its AmpTable) a pixel type holds"""


def full_scale(sicd: Any) -> tuple[float | None, str]:
    """The amplitude at which the source's pixels saturate (None, with why, for float types)."""
    kind = str(sicd.ImageData.PixelType)
    if kind == "RE16I_IM16I":
        return FULL_SCALE[kind], f"{kind}: |z| at or above a component's full scale, 32767"
    if kind == "AMP8I_PHS8I":
        table = sicd.ImageData.AmpTable
        top = float(np.max(np.asarray(table))) if table is not None else FULL_SCALE[kind]
        return top, f"{kind}: the amplitude code 255 ({top:g})"
    return None, f"{kind} pixels have no full scale"


def saturated_fraction(
    patch: np.ndarray, valid: np.ndarray | None, sicd: Any
) -> tuple[float | None, str]:
    """The share of valid pixels of the (resampled) tile whose amplitude |z| is at or above
    the source pixel type's full scale, and what it compared; None for float pixels."""
    top, why = full_scale(sicd)
    if top is None:
        return None, why
    at = np.abs(np.asarray(patch)) >= top
    keep = np.ones(at.shape, bool) if valid is None else np.asarray(valid, bool)
    n = int(keep.sum())
    return (float((at & keep).sum() / n) if n else None), why


def phash(image: np.ndarray) -> str:
    """The 64-bit DCT perceptual hash of a grey image as 16 hex digits (imagehash.phash's)."""
    from PIL import Image
    from scipy.fft import dct

    grey = Image.fromarray(np.asarray(image, dtype=np.uint8)).convert("L")
    pixels = np.asarray(grey.resize((32, 32), Image.Resampling.LANCZOS), dtype=np.float64)
    low = dct(dct(pixels, axis=0), axis=1)[:8, :8]
    bits = (low > np.median(low)).flatten()
    return f"{int(''.join('1' if b else '0' for b in bits), 2):016x}"


def tile_quality(
    power: np.ndarray,
    valid: np.ndarray | None,
    saturated: tuple[float | None, str] | None = None,
) -> dict[str, Any]:
    """meta.json's `quality` block of a tile from its intensities |z|^2 and validity mask
    (and its saturated_fraction, when measured)."""
    out = enl(power, valid)
    quality: dict[str, Any] = {"enl": out["enl"], "enl_windows": out["windows"]}
    if out["enl"] is None:
        quality["enl_reason"] = out["reason"]
    if saturated is not None:
        quality["saturated_fraction"], quality["saturated_rule"] = saturated
    return quality
