"""Pixels projected onto a DEM, and what the terrain does to them: layover and shadow.

SICD Vol. 3's projection to a DEM surface (sarkit's `r_rdot_to_dem_surface`, one point per
call), vectorized. Each pixel's R/Rdot contour is projected exactly to constant heights every
LEVEL_STEP_M from below the lowest to above the highest ground under the scene; between two
levels the contour is taken as straight (it bends by about a centimetre over 100 m of height,
0.3 m over 500 m). Where the DEM is nowhere as steep as the look, the contour meets the
terrain once and the first level whose height above the DEM changes sign brackets it.
Elsewhere the contour is sampled every half DEM pixel for every crossing (more than one:
layover) and the lowest one whose exact ends still differ in sign is taken (sarkit orders
them by height). The bracket is then narrowed by regula falsi (Illinois), first on the
contour as the levels draw it, then on exact constant-height projections until the point is
on the DEM to a millimetre: it never leaves the bracket, so it always converges. A ground
point the terrain hides from the sensor (a ray marched towards the aperture) is in shadow.
Pure math: the DEM comes in as a `dem.DemGrid`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from sarlo_dask.geometry.dem import DemError, DemGrid
from sarlo_dask.geometry.geolocation import (
    LAYOVER,
    PROJECTION_BLOCK,
    SHADOW,
    Projected,
    ecf_to_llh,
    metres_per_degree,
    projection_sets,
    sets_to_hae,
    take_sets,
)

TOLERANCE_M = 1e-3
"""a projected point is on the DEM when its height is this close to the DEM's there"""
MAX_ITERATIONS = 50
LEVEL_STEP_M = 100.0
"""exact constant-height projections of each contour at most this far apart in height"""
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


def _levels(params: Any, sets: Any, heights: np.ndarray) -> np.ndarray:
    """(n, m, 2) lat, lon of each contour at the m `heights`: exact projections."""
    return np.stack([ecf_to_llh(sets_to_hae(params, sets, h))[:, :2] for h in heights], axis=1)


def _ground_metres(ll: np.ndarray) -> np.ndarray:
    """(n,) ground length of each path (n, m, 2) of lat, lon degrees."""
    north_m, east_m = metres_per_degree(ll[:, :-1, 0])
    steps = np.hypot(np.diff(ll[..., 0], axis=1) * north_m, np.diff(ll[..., 1], axis=1) * east_m)
    return np.asarray(steps.sum(axis=1))


def _along(heights: np.ndarray, ll: np.ndarray, h: np.ndarray) -> np.ndarray:
    """(n, k, 2) lat, lon of the contours at the k heights `h`, linear between the exact
    levels (`heights`, their lat/lon `ll` (n, m, 2))."""
    seg = np.clip(np.searchsorted(heights, h, side="right") - 1, 0, len(heights) - 2)
    f = ((h - heights[seg]) / (heights[seg + 1] - heights[seg]))[None, :, None]
    return np.asarray(ll[:, seg] * (1 - f) + ll[:, seg + 1] * f)


def _exact_d(params: Any, sets: Any, h: np.ndarray, dem: DemGrid) -> tuple[np.ndarray, np.ndarray]:
    """(height above the DEM, ECEF) of the contours' exact points at heights `h`."""
    p = sets_to_hae(params, sets, h)
    llh = ecf_to_llh(p)
    return h - dem.height(llh[:, 0], llh[:, 1]), p


def _candidates(
    heights: np.ndarray, ll: np.ndarray, dem: DemGrid
) -> tuple[np.ndarray, np.ndarray, float]:
    """(how many times each contour crosses the terrain, the lower heights (n, c) of the
    brackets of its crossings in order (NaN-padded), the brackets' height step): each contour
    sampled every half DEM pixel along the longest of them."""
    k = int(max(2, np.ceil(np.nanmax(_ground_metres(ll), initial=0.0) / (dem.spacing_m() / 2))))
    h = np.linspace(heights[0], heights[-1], k + 1)
    count = np.zeros(len(ll), dtype="int64")
    parts = []
    per = max(1, SAMPLES_PER_BLOCK // len(h))
    for i in range(0, len(ll), per):
        path = _along(heights, ll[i : i + per], h)
        d = h - dem.height(path[..., 0], path[..., 1])  # < 0: below the terrain
        change = ((d[:, 1:] > 0) != (d[:, :-1] > 0)) & np.isfinite(d[:, 1:] + d[:, :-1])
        count[i : i + per] = change.sum(axis=1)
        parts.append(np.sort(np.where(change, h[:-1], np.nan), axis=1))  # NaNs sort last
    lows = np.concatenate(parts)[:, : max(1, int(count.max(initial=0)))]
    return count, lows, float(h[1] - h[0])


def _first_crossing(
    params: Any, sets: Any, heights: np.ndarray, ll: np.ndarray, dem: DemGrid, steepest: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(crossings, a, d(a), b, d(b)): how many times each contour crosses the terrain, and
    the bracket [a, b] of its lowest crossing, whose exact heights above the DEM d(a) <= 0 <
    d(b) (NaN where the DEM gives no bracket)."""
    d = heights - dem.height(ll[..., 0], ll[..., 1])  # exact, at the levels
    up = (d[:, 1:] > 0) & (d[:, :-1] <= 0)
    first = np.argmax(up, axis=1)
    rows = np.arange(len(ll))
    bracketed = up[rows, first]
    a = np.where(bracketed, heights[first], np.nan)
    b = np.where(bracketed, heights[first + 1], np.inf)
    da, db = d[rows, first], d[rows, first + 1]
    count = bracketed.astype("int64")
    tan_inc = (heights[-1] - heights[0]) / np.maximum(_ground_metres(ll), 1e-9)
    # sampled: where the terrain may be steeper than the look, or where no two levels
    # bracket a crossing (one level's point off the DEM: the crossing may lie before it)
    steep = np.flatnonzero(~bracketed | (steepest >= SLOPE_MARGIN * tan_inc))
    if not len(steep):
        return count, a, da, b, db
    count[steep], lows, step = _candidates(heights, ll[steep], dem)
    todo = np.arange(len(steep))
    for j in range(lows.shape[1]):  # the lowest sampled crossing the exact contour confirms
        todo = todo[np.isfinite(lows[todo, j])]
        if not len(todo):
            break
        lo = lows[todo, j]
        hi = np.minimum(lo + step, heights[-1])
        pick = take_sets(sets, steep[todo])
        d_lo, _ = _exact_d(params, pick, lo, dem)
        d_hi, _ = _exact_d(params, pick, hi, dem)
        ok = (d_lo <= 0) & (d_hi > 0) & (lo < b[steep[todo]])  # at or below the levels'
        at = steep[todo[ok]]
        a[at], da[at], b[at], db[at] = lo[ok], d_lo[ok], hi[ok], d_hi[ok]
        todo = todo[~((d_lo <= 0) & (d_hi > 0))]
    return count, a, da, b, db


def _illinois(
    a: np.ndarray,
    da: np.ndarray,
    b: np.ndarray,
    db: np.ndarray,
    evaluate: Callable[[np.ndarray, np.ndarray], np.ndarray],
    tolerance: float,
    first: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(h, converged): roots of `evaluate(index, h)` (a height above the DEM) inside the
    brackets [a, b] (d(a) <= 0 < d(b)), by regula falsi with the Illinois step: it never
    leaves a bracket, so it converges. `first`: first guesses (NaN: the secant's)."""
    a, da, b, db = a.copy(), da.copy(), b.copy(), db.copy()
    root = np.full(len(a), np.nan)
    done = np.zeros(len(a), dtype=bool)
    kept = np.zeros(len(a), dtype="int8")  # which end the last step kept: -1 a, +1 b
    todo = np.flatnonzero(np.isfinite(a + da + b + db))
    for i in range(MAX_ITERATIONS):
        if not len(todo):
            break
        h = b[todo] - db[todo] * (b[todo] - a[todo]) / (db[todo] - da[todo])
        if i == 0 and first is not None:
            h = np.where(np.isfinite(first[todo]), first[todo], h)
        d = evaluate(todo, h)
        hit = np.abs(d) <= tolerance
        root[todo[hit]], done[todo[hit]] = h[hit], True
        low = ~hit & (d <= 0)  # replaces a; b kept
        high = ~hit & (d > 0)
        at_low, at_high = todo[low], todo[high]
        a[at_low], da[at_low] = h[low], d[low]
        b[at_high], db[at_high] = h[high], d[high]
        db[at_low] = np.where(kept[at_low] == 1, db[at_low] / 2, db[at_low])
        da[at_high] = np.where(kept[at_high] == -1, da[at_high] / 2, da[at_high])
        kept[at_low], kept[at_high] = 1, -1
        todo = todo[~hit & np.isfinite(d)]
    return root, done


def _on_dem(
    params: Any,
    sets: Any,
    heights: np.ndarray,
    ll: np.ndarray,
    bracket: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    dem: DemGrid,
) -> tuple[np.ndarray, np.ndarray]:
    """(ECEF, converged): each contour's point on the DEM inside its bracket. The root is
    first found on the contour as the levels draw it (linear between them: numbers only, no
    projection), then confirmed, and if need be narrowed, on exact projections: most points
    take one."""
    rows = np.arange(len(ll))

    def on_path(index: np.ndarray, h: np.ndarray) -> np.ndarray:
        seg = np.clip(np.searchsorted(heights, h, side="right") - 1, 0, len(heights) - 2)
        f = ((h - heights[seg]) / (heights[seg + 1] - heights[seg]))[:, None]
        point = ll[rows[index], seg] * (1 - f) + ll[rows[index], seg + 1] * f
        return np.asarray(h - dem.height(point[:, 0], point[:, 1]))

    ecf = np.full((len(ll), 3), np.nan)

    def exact(index: np.ndarray, h: np.ndarray) -> np.ndarray:
        d, ecf[index] = _exact_d(params, take_sets(sets, index), h, dem)
        return d

    guess, _ = _illinois(*bracket, on_path, TOLERANCE_M / 10)
    _, done = _illinois(*bracket, exact, TOLERANCE_M, first=guess)
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
    north_m, east_m = metres_per_degree(llh[:, 0])
    dlat, dlon = n / north_m, e / east_m  # degrees per metre along the ray
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
    for name in ("ARP_COA", "Xmt_COA"):
        if getattr(sets, name, None) is not None:
            return np.asarray(getattr(sets, name))
    raise TypeError(f"projection sets {type(sets).__name__} have no sensor position")


def project_to_dem(
    sicd: Any, rows: np.ndarray, cols: np.ndarray, dem: DemGrid, shadows: bool = True
) -> Projected:
    """Pixels (row = range, col = azimuth) projected onto the DEM, with their terrain flags
    (SHADOW only when `shadows`).

    DemError (one line) when the DEM has no height where a pixel's contour meets it."""
    rows, cols = np.ravel(rows), np.ravel(cols)
    steepest = dem.max_slope()
    h_lo, h_hi = dem.surface_range()
    h_lo, h_hi = h_lo - 1.0, h_hi + 1.0  # strictly below and above the ground
    heights = np.linspace(h_lo, h_hi, int(np.ceil((h_hi - h_lo) / LEVEL_STEP_M)) + 1)
    ecf = np.empty((len(rows), 3))
    flags = np.zeros(len(rows), dtype="uint8")
    for i in range(0, len(rows), PROJECTION_BLOCK):
        b = slice(i, i + PROJECTION_BLOCK)
        params, sets = projection_sets(sicd, rows[b], cols[b])
        try:
            ll = _levels(params, sets, heights)
            count, lo, d_lo, hi, d_hi = _first_crossing(params, sets, heights, ll, dem, steepest)
            points, ok = _on_dem(params, sets, heights, ll, (lo, d_lo, hi, d_hi), dem)
        except ValueError as exc:  # a constant-height projection that did not converge
            raise DemError(f"DEM {dem.name}: {exc}") from None
        if not ok.all():
            bad = int(np.flatnonzero(~ok)[0])
            r, c = rows[b][bad], cols[b][bad]
            raise DemError(
                f"DEM {dem.name}: no height where the contour of pixel (row {r:g}, col {c:g}) "
                f"meets the ground ({int((~ok).sum())} of {len(ok)} such pixels): it does "
                "not cover the scene"
            )
        ecf[b] = points
        flags[b] = np.where(count > 1, LAYOVER, 0)
        if shadows:
            shadowed = _shadowed(points, _sensor(sets), h_hi, dem)
            flags[b] |= np.where(shadowed, SHADOW, 0).astype("uint8")
    return Projected(ecf, flags)
