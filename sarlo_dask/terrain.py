"""Pixels projected onto a DEM, and what the terrain does to them: layover, shadow, slope.

SICD Vol. 3's projection to a DEM surface (sarkit's `r_rdot_to_dem_surface`, one point per
call) vectorized: each pixel's R/Rdot contour is projected to the lowest and highest heights
of the DEM window, the chord between the two (a contour hundreds of kilometres in radius is
straight to centimetres over it) is sampled every half DEM pixel for where it crosses the
terrain (not needed where the DEM is nowhere as steep as the look: there each contour meets
it once), and the first crossing (the lowest, sarkit's order) is refined with exact
constant-height projections (secant on height) until it is on the DEM to a millimetre. A
contour that crosses the terrain more than once is in layover; a ground point the terrain
hides from the sensor (a ray marched towards the aperture position) is in shadow.
Pure math: the DEM comes in as a `dem.DemGrid`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from sarlo_dask.dem import DemError, DemGrid
from sarlo_dask.geolocation import (
    LAYOVER,
    PROJECTION_BLOCK,
    SHADOW,
    Projected,
    ecf_to_llh,
    llh_to_ecf,
    projection_sets,
    sets_to_hae,
    take_sets,
)

TOLERANCE_M = 1e-3
"""a projected point is on the DEM when its height is this close to the DEM's there"""
MAX_ITERATIONS = 12
SAMPLES_PER_BLOCK = 4_000_000
"""contour or ray samples evaluated at once (memory: about 10 arrays of this many floats)"""
SHADOW_CLEARANCE_M = 0.01
"""the terrain must rise this far above a ray to hide its ground point"""
EARTH_RADIUS_M = 6_371_000.0
SLOPE_MARGIN = 0.9
"""terrain at most this fraction of tan(incidence) steep crosses each contour once"""


@dataclass(frozen=True, eq=False)
class DemSurface:
    """The DEM's surface (a `HeightSurface`): pixels land where their contour meets it."""

    dem: DemGrid
    shadows: bool = True
    """look for shadow (rays marched through the DEM); False: positions and layover only, as
    the tie-point step search needs"""

    def project(self, sicd: Any, rows: np.ndarray, cols: np.ndarray) -> Projected:
        return project_to_dem(sicd, rows, cols, self.dem, self.shadows)

    def describe(self) -> str:
        return f"DEM {self.dem.name}"


def _metres(lat: np.ndarray, dlat: np.ndarray, dlon: np.ndarray) -> np.ndarray:
    """Ground distance of small lat/lon steps (degrees) at latitude `lat`."""
    return np.hypot(dlat * 111_320.0, dlon * 111_320.0 * np.cos(np.radians(lat)))


def _crossings(
    lo: np.ndarray, hi: np.ndarray, h_lo: float, h_hi: float, dem: DemGrid
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(how many times each chord lo -> hi (lat, lon, hae rows) crosses the terrain, a first
    guess of the lowest crossing's height, the slope of (height - DEM) there per metre of
    height); NaN guesses where the DEM has no height along the chord."""
    n = len(lo)
    length = _metres(lo[:, 0], hi[:, 0] - lo[:, 0], hi[:, 1] - lo[:, 1])
    k = int(max(2, np.ceil(np.nanmax(length, initial=0.0) / (dem.spacing_m() / 2)) + 1))
    t = np.linspace(0.0, 1.0, k)
    count = np.zeros(n, dtype="int64")
    guess, slope = np.full(n, np.nan), np.full(n, np.nan)
    per = max(1, SAMPLES_PER_BLOCK // k)
    for i in range(0, n, per):
        b = slice(i, i + per)
        lat = lo[b, 0, None] + t * (hi[b, 0] - lo[b, 0])[:, None]
        lon = lo[b, 1, None] + t * (hi[b, 1] - lo[b, 1])[:, None]
        h = h_lo + t * (h_hi - h_lo)
        d = h - dem.height(lat, lon)  # < 0: below the terrain
        ok = np.isfinite(d).all(axis=1)
        change = (d[:, 1:] > 0) != (d[:, :-1] > 0)
        count[b] = np.where(ok, change.sum(axis=1), 0)
        first = np.argmax(change, axis=1)
        rows = np.arange(len(d))
        da, db = d[rows, first], d[rows, first + 1]
        ha, hb = h[first], h[first + 1]
        with np.errstate(invalid="ignore", divide="ignore"):
            guess[b] = np.where(ok & (count[b] > 0), ha - da * (hb - ha) / (db - da), np.nan)
            slope[b] = (db - da) / (hb - ha)
    return count, guess, slope


def _ends(
    lo: np.ndarray, hi: np.ndarray, h_lo: float, h_hi: float, dem: DemGrid, steepest: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`_crossings` from the chord's two ends alone, where it is exact: a contour rises
    1/tan(incidence) metres per metre away from the sensor, so terrain never steeper than
    tan(incidence) (`steepest`, the DEM's steepest slope in any direction) is met exactly once.
    Elsewhere the count is 0 (undecided: the caller samples the chord)."""
    length = _metres(lo[:, 0], hi[:, 0] - lo[:, 0], hi[:, 1] - lo[:, 1])
    tan_inc = (h_hi - h_lo) / np.maximum(length, 1e-9)
    d_lo = h_lo - dem.height(lo[:, 0], lo[:, 1])
    d_hi = h_hi - dem.height(hi[:, 0], hi[:, 1])
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = (d_hi - d_lo) / (h_hi - h_lo)
        guess = h_lo - d_lo / slope
    once = (steepest < SLOPE_MARGIN * tan_inc) & np.isfinite(guess)
    return once.astype("int64"), np.where(once, guess, np.nan), slope


def _refine(
    params: Any, sets: Any, h: np.ndarray, slope: np.ndarray, dem: DemGrid
) -> tuple[np.ndarray, np.ndarray]:
    """(ECEF, converged) of the contours' points on the DEM, by secant steps on the height
    from `h` (slope: the first step's d(height - DEM)/d(height))."""
    n = len(h)
    ecf = np.full((n, 3), np.nan)
    done = np.zeros(n, dtype=bool)
    todo = np.flatnonzero(np.isfinite(h))
    h, prev_h, prev_d = h.copy(), np.full(n, np.nan), np.full(n, np.nan)
    for _ in range(MAX_ITERATIONS):
        if not len(todo):
            break
        p = sets_to_hae(params, take_sets(sets, todo), h[todo])
        llh = ecf_to_llh(p)
        d = h[todo] - dem.height(llh[:, 0], llh[:, 1])
        hit = np.abs(d) <= TOLERANCE_M
        ecf[todo[hit]] = p[hit]
        done[todo[hit]] = True
        with np.errstate(invalid="ignore", divide="ignore"):
            secant = (d - prev_d[todo]) / (h[todo] - prev_h[todo])
        s = np.where(np.isfinite(secant) & (secant != 0), secant, slope[todo])
        s = np.where(np.isfinite(s) & (np.abs(s) > 1e-6), s, 1.0)
        prev_h[todo], prev_d[todo] = h[todo], d
        h[todo] = h[todo] - d / s
        keep = ~hit & np.isfinite(d) & np.isfinite(h[todo])
        todo = todo[keep]
    return ecf, done


def _shadowed(ecf: np.ndarray, sensor: np.ndarray, h_hi: float, dem: DemGrid) -> np.ndarray:
    """Whether the terrain rises above the ray from each ground point towards its sensor.

    The ray is marched every DEM pixel until it is above the DEM's highest point, in the
    ground point's local east/north/up frame (lat/lon linear in the step, the height lifted by
    the Earth's curvature: d^2 / 2R, 0.7 m at 3 km)."""
    from sarkit.wgs84 import east, north, up

    llh = ecf_to_llh(ecf)
    u = sensor - ecf
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    e, n, z = ((u * f(llh)).sum(axis=1) for f in (east, north, up))
    sin_el = np.clip(z, 1e-3, 1.0)
    cos_el = np.sqrt(1 - sin_el**2)
    reach = np.maximum(h_hi - llh[:, 2], 0.0) / sin_el  # along the ray, metres
    step = dem.spacing_m() / np.maximum(cos_el, 1e-3)
    k = int(np.clip(np.ceil(np.nanmax(reach / step, initial=0.0)), 1, 4096))
    dlat = n / 111_320.0  # degrees per metre along the ray
    dlon = e / (111_320.0 * np.cos(np.radians(llh[:, 0])))
    out = np.zeros(len(ecf), dtype=bool)
    per = max(1, SAMPLES_PER_BLOCK // k)
    j = np.arange(1, k + 1)
    for i in range(0, len(ecf), per):
        b = slice(i, i + per)
        s = np.minimum(j[None, :] * step[b, None], reach[b, None])  # (n, k) metres along
        ground = s * cos_el[b, None]
        ray_h = llh[b, 2, None] + s * sin_el[b, None] + ground**2 / (2 * EARTH_RADIUS_M)
        terrain = dem.height(
            llh[b, 0, None] + s * dlat[b, None], llh[b, 1, None] + s * dlon[b, None]
        )
        out[b] = np.any(terrain - ray_h > SHADOW_CLEARANCE_M, axis=1)
    return out


def _sensor(sets: Any) -> np.ndarray:
    """Where the ray of a shadow test goes: the aperture position (bistatic: the transmitter,
    whose shadow is the one that leaves a ground point unlit)."""
    return np.asarray(getattr(sets, "ARP_COA", getattr(sets, "Xmt_COA", None)))


def project_to_dem(
    sicd: Any, rows: np.ndarray, cols: np.ndarray, dem: DemGrid, shadows: bool = True
) -> Projected:
    """Pixels (row = range, col = azimuth) projected onto the DEM, with their terrain flags
    (SHADOW only when `shadows`).

    DemError (one line) when the DEM has no height under a pixel's contour."""
    rows, cols = np.ravel(rows), np.ravel(cols)
    steepest = dem.max_slope()
    h_lo, h_hi = dem.hae_range()
    h_lo, h_hi = h_lo - 1.0, h_hi + 1.0  # the chord's ends are strictly below and above
    ecf = np.empty((len(rows), 3))
    flags = np.zeros(len(rows), dtype="uint8")
    for i in range(0, len(rows), PROJECTION_BLOCK):
        b = slice(i, i + PROJECTION_BLOCK)
        params, sets = projection_sets(sicd, rows[b], cols[b])
        lo = ecf_to_llh(sets_to_hae(params, sets, h_lo))
        hi = ecf_to_llh(sets_to_hae(params, sets, h_hi))
        count, guess, slope = _ends(lo, hi, h_lo, h_hi, dem, steepest)
        ambiguous = np.flatnonzero(count != 1)  # the terrain may be steeper than the look
        if len(ambiguous):
            count[ambiguous], guess[ambiguous], slope[ambiguous] = _crossings(
                lo[ambiguous], hi[ambiguous], h_lo, h_hi, dem
            )
        points, ok = _refine(params, sets, guess, slope, dem)
        if not ok.all():
            bad = int(np.flatnonzero(~ok)[0])
            r, c = rows[b][bad], cols[b][bad]
            why = "no height along its contour" if count[bad] == 0 else "no convergence"
            raise DemError(
                f"DEM {dem.name}: pixel (row {r:g}, col {c:g}) not projected onto it ({why}; "
                f"{int((~ok).sum())} of {len(ok)} such pixels): does it cover the scene?"
            )
        ecf[b] = points
        flags[b] = np.where(count > 1, LAYOVER, 0)
        if shadows:
            flags[b] |= np.where(_shadowed(points, _sensor(sets), h_hi, dem), SHADOW, 0).astype(
                "uint8"
            )
    return Projected(ecf, flags)


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


def require_cover(dem: DemGrid, lat: np.ndarray, lon: np.ndarray) -> None:
    """DemError unless the DEM has heights at every (lat, lon)."""
    h = dem.height(lat, lon)
    if not np.isfinite(h).all():
        bad = int(np.flatnonzero(~np.isfinite(h))[0])
        raise DemError(
            f"DEM {dem.name} has no height at {np.ravel(lat)[bad]:.6f}, "
            f"{np.ravel(lon)[bad]:.6f}: it does not cover the scene"
        )


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
    from sarlo_dask.tiles import tile_llh

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
