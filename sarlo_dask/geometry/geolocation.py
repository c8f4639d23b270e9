"""Geolocation of standardized pixels: sarkit projection on tie points sized by an error bound.

Dense per-pixel projection costs about a microsecond a point; a tie-point grid projected with
sarkit (SICD Vol. 3 image-to-scene, to a height surface: constant height here, a DEM in
`terrain`) and interpolated bilinearly costs almost nothing and, on a smooth constant-height
surface, errs by millimetres (on a DEM, by what the terrain's curvature between tie points
makes). The grid step is the largest whose interpolation error, measured at the cell centres
(where bilinear error peaks), stays within half the stated bound.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np


def _sarkit_at_least(major: int, minor: int) -> bool:
    from importlib.metadata import version

    parts = version("sarkit").split(".")
    return (int(parts[0]), int(parts[1])) >= (major, minor)


BISTATIC_OK = _sarkit_at_least(1, 9)
"""sarkit 1.8 computes bistatic transmit/receive times that depend on the other points of a
call (seen: 0.742 s alone, 0.698 s among 500 points); 1.9+ (Python 3.12+) does not"""

PROJECTION_BLOCK = 50_000
"""points per projection call (one large block is slower)"""
HAE_TOLERANCE_M = 1e-3
"""iterate until each point is this close to the height surface (sarkit's default is 1 m)"""
HAE_ITERATIONS = 10
BISTATIC_TOLERANCE_M = 1e-5
"""bistatic collects: ground-plane iteration tolerance (sarkit's default, 1 cm, would leave
tie points centimetres apart from one batch of points to another)"""
BISTATIC_ITERATIONS = 50


@functools.lru_cache(maxsize=8)
def _projection_of(xml: str) -> tuple[Any, Any, int, int]:
    import sarkit.sicd.projection as proj
    from lxml import etree

    tree = etree.ElementTree(etree.fromstring(xml.encode()))
    n_rows = int(tree.findtext("{*}ImageData/{*}NumRows"))
    n_cols = int(tree.findtext("{*}ImageData/{*}NumCols"))
    return tree, proj.MetadataParams.from_xml(tree), n_rows, n_cols


def _projection(sicd: Any) -> tuple[Any, Any, int, int]:
    """sarkit's XML tree, projection metadata, NumRows and NumCols of a SICD: its XML text
    (parsed once per process), or a sarpy structure (serialized on each call: pass the text
    where a SICD is projected repeatedly, as the scene stage does)."""
    return _projection_of(sicd if isinstance(sicd, str) else sicd.to_xml_string(tag="SICD"))


def projection_sets(sicd: Any, rows: np.ndarray, cols: np.ndarray) -> tuple[Any, Any]:
    """sarkit's projection metadata and the COA projection sets of pixels (row = range,
    col = azimuth): what every projection of those pixels, to any surface, starts from."""
    import sarkit.sicd as sksicd
    import sarkit.sicd.projection as proj

    tree, params, _, _ = _projection(sicd)
    points = np.column_stack([np.ravel(rows), np.ravel(cols)]).astype("float64")
    return params, proj.compute_projection_sets(params, sksicd.rowcol_to_xrowycol(tree, points))


def take_sets(sets: Any, index: Any) -> Any:
    """The projection sets of a subset of the points."""
    import dataclasses

    return type(sets)(**{f.name: getattr(sets, f.name)[index] for f in dataclasses.fields(sets)})


def sets_to_hae(params: Any, sets: Any, hae: Any) -> np.ndarray:
    """ECEF (N, 3) where the points' R/Rdot contours meet the HAE surface `hae` (a height, or
    one per point), with sarkit's image-to-constant-HAE projection."""
    import sarkit.sicd.projection as proj

    spp, _, ok = proj.r_rdot_to_constant_hae_surface(
        params.LOOK,
        params.SCP,
        sets,
        hae,
        delta_hae_max=HAE_TOLERANCE_M,
        nlim=HAE_ITERATIONS,
        bistat_delta_gp_gpp=BISTATIC_TOLERANCE_M,
        bistat_maxiter=BISTATIC_ITERATIONS,
    )
    if not ok:
        where = f"{float(np.min(hae)):.1f}-{float(np.max(hae)):.1f}" if np.ndim(hae) else hae
        raise ValueError(f"projection to the {where} m HAE surface did not converge")
    return np.asarray(spp)


def scene_size(sicd: Any) -> tuple[int, int, float]:
    """NumRows, NumCols and the SCP's HAE of a SICD (its XML text or a sarpy structure)."""
    _, params, n_rows, n_cols = _projection(sicd)
    return n_rows, n_cols, float(params.SCP_HAE)


def project_pixels(
    sicd: Any, rows: np.ndarray, cols: np.ndarray, hae: float | None = None
) -> np.ndarray:
    """ECEF (N, 3) of SICD pixels (row = range, col = azimuth) at constant height, with
    sarkit's image-to-constant-HAE-surface projection (the same points as sarpy's
    image_to_ground to nanometres). The height is the SCP's unless `hae` is given."""
    rows, cols = np.ravel(rows), np.ravel(cols)
    out = np.empty((len(rows), 3))
    for i in range(0, len(rows), PROJECTION_BLOCK):
        part = slice(i, i + PROJECTION_BLOCK)
        params, sets = projection_sets(sicd, rows[part], cols[part])
        out[part] = sets_to_hae(params, sets, float(params.SCP_HAE if hae is None else hae))
    return out


METRES_PER_DEGREE = 111_320.0
"""of latitude (and of longitude at the equator): a local, spherical scale, good to 0.5%"""


def metres_per_degree(lat: Any) -> tuple[Any, Any]:
    """(north, east) metres per degree of latitude and of longitude at latitude `lat`: for
    small steps on the ground (a DEM's pixels, a window's margins)."""
    return METRES_PER_DEGREE, METRES_PER_DEGREE * np.cos(np.radians(lat))


def ecf_to_llh(ecf: np.ndarray) -> np.ndarray:
    from sarkit.wgs84 import cartesian_to_geodetic

    return np.asarray(cartesian_to_geodetic(np.asarray(ecf, dtype="float64")))


def llh_to_ecf(llh: np.ndarray) -> np.ndarray:
    from sarkit.wgs84 import geodetic_to_cartesian

    return np.asarray(geodetic_to_cartesian(np.asarray(llh, dtype="float64")))


def tie_point_axis(n: int, step: int) -> np.ndarray:
    """Pixel indices 0, step, 2 step, ... and always the last pixel n - 1."""
    axis = np.arange(0, max(n - 1, 0), step)
    return np.append(axis, n - 1).astype("int64")


LAYOVER, SHADOW = 1, 2
"""terrain flags of a projected pixel (bits): its contour meets the terrain more than once;
the terrain hides its ground point from the sensor"""


@dataclass(frozen=True)
class Projected:
    """Pixels projected onto a height surface."""

    ecf: np.ndarray
    """(N, 3) ground points, ECEF metres"""
    flags: np.ndarray
    """(N,) uint8 LAYOVER | SHADOW bits (0 on a constant-height surface)"""


class HeightSurface(Protocol):
    """Where pixels are projected to: the SCP's (or a given) constant height, or a DEM
    (`terrain.DemSurface`). Geolocation and optical pairing see only this."""

    def project(self, sicd: Any, rows: np.ndarray, cols: np.ndarray) -> Projected: ...

    def describe(self) -> str: ...


@dataclass(frozen=True)
class ConstantHeight:
    """The surface of constant height above the ellipsoid: `hae`, or the SCP's when None."""

    hae: float | None = None

    def project(self, sicd: Any, rows: np.ndarray, cols: np.ndarray) -> Projected:
        ecf = project_pixels(sicd, rows, cols, self.hae)
        return Projected(ecf, np.zeros(len(ecf), dtype="uint8"))

    def describe(self) -> str:
        return "SCP HAE" if self.hae is None else f"{self.hae} m HAE"


Surface = HeightSurface | float | None


def as_surface(surface: Surface) -> HeightSurface:
    """A height surface; a number or None stands for a constant height (None: the SCP's)."""
    if surface is None or isinstance(surface, int | float):
        return ConstantHeight(None if surface is None else float(surface))
    return surface


def project_grid(sicd: Any, az: np.ndarray, rg: np.ndarray, surface: Surface = None) -> np.ndarray:
    """(4, len(az), len(rg)) lat, lon, hae and terrain flags of the tie points az x rg."""
    cols, rows = np.meshgrid(az, rg, indexing="ij")
    projected = as_surface(surface).project(sicd, rows.ravel(), cols.ravel())
    llh = ecf_to_llh(projected.ecf)
    out = np.concatenate([llh.T, projected.flags[None, :].astype("float64")])
    return out.reshape(4, len(az), len(rg))


def bilinear_centres(grid: np.ndarray) -> np.ndarray:
    """Bilinear interpolation of a (..., A, R) grid at every cell centre."""
    return 0.25 * (
        grid[..., :-1, :-1] + grid[..., 1:, :-1] + grid[..., :-1, 1:] + grid[..., 1:, 1:]
    )


@dataclass(frozen=True)
class StepChoice:
    step: int
    estimate_m: float
    """the largest interpolation error measured at cell centres, metres"""
    bound_m: float


def interpolation_error(
    sicd: Any, n_az: int, n_rg: int, step: int, surface: Surface = None
) -> float:
    """Largest distance (m) between the bilinear interpolant and the projection at the cell
    centres. Cells touching layover are left out: there a pixel has several ground points
    and no interpolant is right (their tiles say so instead)."""
    az, rg = tie_point_axis(n_az, step), tie_point_axis(n_rg, step)
    grid = project_grid(sicd, az, rg, surface)
    mid_az, mid_rg = 0.5 * (az[:-1] + az[1:]), 0.5 * (rg[:-1] + rg[1:])
    if len(mid_az) == 0 or len(mid_rg) == 0:
        return 0.0
    truth = project_grid(sicd, mid_az, mid_rg, surface)
    guess = bilinear_centres(grid[:3])
    layover = (grid[3].astype("uint8") & LAYOVER) > 0
    touched = (layover[:-1, :-1] | layover[1:, :-1] | layover[:-1, 1:] | layover[1:, 1:]) | (
        (truth[3].astype("uint8") & LAYOVER) > 0
    )
    keep = ~touched.ravel()
    if not keep.any():  # nothing measurable: this step cannot be shown to hold
        return float("inf")
    d = llh_to_ecf(guess.reshape(3, -1).T[keep]) - llh_to_ecf(truth[:3].reshape(3, -1).T[keep])
    return float(np.sqrt((d**2).sum(axis=1)).max())


def tie_point_step(
    sicd: Any,
    bound_m: float = 1e-3,
    max_step: int = 512,
    min_step: int = 4,
    surface: Surface = None,
) -> StepChoice:
    """The largest power-of-two step whose measured error is at most half of `bound_m`."""
    _, _, n_rg, n_az = _projection(sicd)
    step = max_step
    while True:
        err = interpolation_error(sicd, n_az, n_rg, step, surface)
        if err <= bound_m / 2 or step <= min_step:
            return StepChoice(step, err, bound_m)
        step //= 2


def geolocate_tie_points(sicd: Any, step: int, surface: Surface = None) -> Any:
    """An xarray Dataset of lat, lon, hae on (tp_azimuth, tp_range) for a whole image."""
    import xarray as xr

    _, _, n_rg, n_az = _projection(sicd)
    az, rg = tie_point_axis(n_az, step), tie_point_axis(n_rg, step)
    lat, lon, h, _ = project_grid(sicd, az, rg, surface)
    dims = ("tp_azimuth", "tp_range")
    return xr.Dataset(
        {"lat": (dims, lat), "lon": (dims, lon), "hae": (dims, h)},
        coords={"tp_azimuth": az, "tp_range": rg},
    )
