"""What the terrain says of a tile: its layover and shadow shares, relief, terrain incidence,
and how far a constant height puts its optical view (from the scene store's tie points).

Pure functions on a scene store's tie-point variables (`terrain_flags`, and with
`dem_use: check` the DEM's own geolocation and `terrain_shift_px`): the DEM itself is not
needed any more at the tile stage.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sarlo_dask.geometry.geolocation import LAYOVER, SHADOW, ecf_to_llh, llh_to_ecf


def mean_normal(ecf: np.ndarray) -> np.ndarray:
    """The unit ECEF mean of the upward normals of a surface sampled on a grid (A, R, 3) of
    ground points: each point's normal from its neighbours along both axes."""
    from sarkit.wgs84 import up

    d_a, d_r = np.gradient(ecf, axis=(0, 1))
    normals = np.cross(d_a, d_r).reshape(-1, 3)
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    ups = up(ecf_to_llh(ecf.reshape(-1, 3)))
    normals *= np.sign((normals * ups).sum(axis=1))[:, None]
    mean = normals.mean(axis=0)
    return np.asarray(mean / np.linalg.norm(mean))


def incidence_on(normal: np.ndarray, ground: np.ndarray, sensor: np.ndarray) -> float:
    """Degrees between the line of sight (ground -> sensor) and a surface normal."""
    los = sensor - ground
    c = float(normal @ los / np.linalg.norm(los))
    return float(np.degrees(np.arccos(np.clip(c, -1.0, 1.0))))


def terrain_shift_px(
    lat: np.ndarray,
    lon: np.ndarray,
    dem_lat: np.ndarray,
    dem_lon: np.ndarray,
    tp_az: np.ndarray,
    tp_rg: np.ndarray,
) -> np.ndarray:
    """(A, R) how far, in pixels, the optical ground a constant-height geolocation gives each
    tie point is from the ground the DEM puts there: the local Jacobian of the constant-height
    grid (lat, lon on the tie points' pixels tp_az x tp_rg) turns the lat/lon difference into
    pixels. What a build without DEM-aware geolocation gets wrong, tie point by tie point."""
    axes = (np.asarray(tp_az, dtype="float64"), np.asarray(tp_rg, dtype="float64"))
    d_lat_a, d_lat_r = np.gradient(lat, *axes)
    d_lon_a, d_lon_r = np.gradient(lon, *axes)
    jac = np.stack([np.stack([d_lat_a, d_lat_r], -1), np.stack([d_lon_a, d_lon_r], -1)], -2)
    diff = np.stack([dem_lat - lat, dem_lon - lon], -1)[..., None]
    px = np.linalg.solve(jac, diff)[..., 0]
    return np.asarray(np.hypot(px[..., 0], px[..., 1]))


def _window_samples(w: Any, tp_az: np.ndarray, tp_rg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(azimuth, range) pixel axes of the grid that speaks for a window: its tie points when
    it holds at least three a side, else 17 x 17 points over it."""
    last = w.size - 1
    ia = tp_az[(tp_az >= w.a0) & (tp_az <= w.a0 + last)]
    ir = tp_rg[(tp_rg >= w.r0) & (tp_rg <= w.r0 + last)]
    if len(ia) < 3 or len(ir) < 3:
        ia, ir = w.a0 + np.linspace(0, last, 17), w.r0 + np.linspace(0, last, 17)
    return ia.astype("float64"), ir.astype("float64")


def _nearest(var: Any, a: np.ndarray, r: np.ndarray) -> np.ndarray:
    """A tie-point variable's values at the tie points nearest to pixels (a, r)."""
    tp_az, tp_rg = var.tp_azimuth.values, var.tp_range.values
    ia = np.abs(tp_az[None, :] - a[:, None]).argmin(axis=1)
    ir = np.abs(tp_rg[None, :] - r[:, None]).argmin(axis=1)
    return np.asarray(var.values[ia, ir])


def tile_terrain(w: Any, ds: Any, sicd: Any) -> dict[str, Any] | None:
    """meta.json's `terrain` section of a window of a scene store made with a DEM (None
    without one): the DEM and its use, the fractions of the window's tie points in layover and
    in shadow, its relief, the terrain incidence (the line of sight at its centre against the
    mean of the normals of its ground on the DEM) and, when the DEM only checks, how far off
    the optical view is (SAR px)."""
    from sarlo_dask.geometry.tiles import tile_llh

    if "terrain_flags" not in ds:
        return None
    ia, ir = _window_samples(w, ds.tp_azimuth.values, ds.tp_range.values)
    a, r = (g.ravel() for g in np.meshgrid(ia, ir, indexing="ij"))
    flags = _nearest(ds.terrain_flags, a, r).astype("uint8")
    lat, lon, hae = (
        ds[n]
        for n in (("dem_lat", "dem_lon", "dem_hae") if "dem_lat" in ds else ("lat", "lon", "hae"))
    )
    llh = tile_llh(lat, lon, hae, a, r)
    mid = np.array([(w.size - 1) / 2])
    centre = llh_to_ecf(tile_llh(lat, lon, hae, w.a0 + mid, w.r0 + mid))[0]
    arp = np.asarray(sicd.Position.ARPPoly(sicd.SCPCOA.SCPTime))
    shift = None
    if "terrain_shift_px" in ds:
        shift = float(_nearest(ds.terrain_shift_px, a, r).max())
    return {
        "dem": ds.attrs.get("dem", ""),
        "use": ds.attrs.get("dem_use", ""),
        "layover_fraction": float(((flags & LAYOVER) > 0).mean()),
        "shadow_fraction": float(((flags & SHADOW) > 0).mean()),
        "relief_m": float(np.ptp(llh[:, 2])),
        "incidence_deg": incidence_on(
            mean_normal(llh_to_ecf(llh).reshape(len(ia), len(ir), 3)), centre, arp
        ),
        "shift_px": shift,
        "samples": len(a),
    }
