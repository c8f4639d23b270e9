"""Terrain for simulated scenes: an analytic surface, its DEM GeoTIFF, targets projected on it.

The surface h(east, north) is a tilt plus a few anisotropic Gaussian hills drawn from
`spec.terrain_seed`, in metres of a local equirectangular map about (spec.lat, spec.lon)
(east = dlon * N0 cos(lat0), north = dlat * M0: exact and invertible; its scale is off by
~2e-4 per km from the centre). It is scaled so that max - min over the flat footprint is
`spec.relief_m` and shifted so that the SCP lies on it (h(0, 0) = spec.hae). Targets are
projected onto the ANALYTIC surface by sarkit's `r_rdot_to_dem_surface`, one at a time: an
oracle independent of any DEM file and of the pipeline's own (vectorized) DEM projection.
The DEM file samples the same surface.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from sarlo_dask.sim.spec import SimulationSpec

WGS84_A = 6378137.0
WGS84_E2 = 6.69437999014e-3
ELLIPSOIDAL_CRS = "EPSG:4979"
"""WGS 84 3-D geographic: the DEM's heights are ellipsoidal (HAE)"""
ORTHOMETRIC_CRS = "EPSG:4326+3855"
"""WGS 84 + EGM2008 height (rasterio reads it back as EPSG:9518)"""
DEM_MARGIN_M = 100.0
LAYOVER_MARGIN_DEG = 2.0
"""refuse (unless allowed) sensor-facing slopes this close to the incidence angle"""
PROJECTION_STEP_M = 0.1
"""sarkit's delta_dist_dem for the truth: it interpolates linearly between contour points this
far apart, so a target sits ~curvature * step^2 / 8 off the analytic surface (measured < 1e-5 m)"""

Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Terrain:
    """h = offset_m + tilt_east * e + tilt_north * n + sum(amp * exp(-(de/se)^2/2 - (dn/sn)^2/2)),
    e and n in metres of the local map about (lat0, lon0); hills are (e, n, amp, se, sn) in m."""

    lat0: float
    lon0: float
    offset_m: float
    tilt_east: float
    tilt_north: float
    hills: tuple[tuple[float, float, float, float, float], ...]


def map_radii(lat0: float) -> tuple[float, float]:
    """Metres per radian of latitude (meridian radius M) and of longitude (N cos lat) at lat0."""
    s = np.sin(np.deg2rad(lat0))
    w = 1.0 - WGS84_E2 * s * s
    m = WGS84_A * (1.0 - WGS84_E2) / w**1.5
    n = WGS84_A / np.sqrt(w)
    return float(m), float(n * np.cos(np.deg2rad(lat0)))


def latlon_to_en(lat0: float, lon0: float, lat: Any, lon: Any) -> tuple[Floats, Floats]:
    """Local map metres (east, north) of lat/lon (degrees) about (lat0, lon0)."""
    m, p = map_radii(lat0)
    east = np.deg2rad(np.asarray(lon, dtype="float64") - lon0) * p
    north = np.deg2rad(np.asarray(lat, dtype="float64") - lat0) * m
    return east, north


def _height_en(t: Terrain, e: Floats, n: Floats) -> Floats:
    h = t.offset_m + t.tilt_east * e + t.tilt_north * n
    for he, hn, amp, se, sn in t.hills:
        h = h + amp * np.exp(-0.5 * (((e - he) / se) ** 2 + ((n - hn) / sn) ** 2))
    return np.asarray(h, dtype="float64")


def _gradient_en(t: Terrain, e: Floats, n: Floats) -> tuple[Floats, Floats]:
    ge = np.full(np.shape(e), t.tilt_east)
    gn = np.full(np.shape(n), t.tilt_north)
    for he, hn, amp, se, sn in t.hills:
        g = amp * np.exp(-0.5 * (((e - he) / se) ** 2 + ((n - hn) / sn) ** 2))
        ge = ge - g * (e - he) / se**2
        gn = gn - g * (n - hn) / sn**2
    return ge, gn


def terrain_height(t: Terrain, lat: Any, lon: Any) -> Floats:
    """The surface's HAE (m) at lat/lon (degrees, any shape)."""
    return _height_en(t, *latlon_to_en(t.lat0, t.lon0, lat, lon))


def terrain_gradient(t: Terrain, lat: Any, lon: Any) -> tuple[Floats, Floats]:
    """(dh/d east, dh/d north) in m/m at lat/lon (degrees): the slope is atan(|gradient|)."""
    return _gradient_en(t, *latlon_to_en(t.lat0, t.lon0, lat, lon))


def terrain_normal_enu(t: Terrain, lat: Any, lon: Any) -> Floats:
    """Unit surface normals (..., 3) in local east/north/up at lat/lon (degrees)."""
    ge, gn = terrain_gradient(t, lat, lon)
    v = np.stack([-ge, -gn, np.ones_like(ge)], axis=-1)
    return np.asarray(v / np.linalg.norm(v, axis=-1, keepdims=True))


def footprint_half_extents(spec: SimulationSpec) -> tuple[float, float]:
    """Half extents (east, north) in m of the flat footprint: range lies along east (the sensor
    looks east, flying north), azimuth along north."""
    east = spec.rows * spec.row_spacing / (2.0 * np.sin(np.deg2rad(spec.incidence_deg)))
    return float(east), float(spec.cols * spec.col_spacing / 2.0)


def _footprint_grid(spec: SimulationSpec, n: int = 129) -> tuple[Floats, Floats]:
    he, hn = footprint_half_extents(spec)
    e, nn = np.meshgrid(np.linspace(-he, he, n), np.linspace(-hn, hn, n))
    return e, nn


def terrain_for_spec(spec: SimulationSpec) -> Terrain:
    """The scene's surface: a pure function of the spec (its terrain seed, relief, footprint)."""
    if spec.relief_m <= 0:
        raise ValueError("relief_m must be > 0 for a terrain")
    he, hn = footprint_half_extents(spec)
    rng = np.random.default_rng([spec.terrain_seed, 18])
    angle = rng.uniform(0.0, 2 * np.pi)
    tilt = rng.uniform(0.3, 0.6)
    hills = []
    for _ in range(3):
        amp = rng.uniform(0.5, 1.0) * rng.choice([-1.0, 1.0])
        ce, cn = rng.uniform(-0.7, 0.7, 2) * (he, hn)
        se, sn = rng.uniform(0.4, 0.8, 2) * (he, hn)
        hills.append((float(ce), float(cn), float(amp), float(se), float(sn)))
    unit = Terrain(
        spec.lat, spec.lon, 0.0, tilt * np.cos(angle) / he, tilt * np.sin(angle) / hn, tuple(hills)
    )
    e, n = _footprint_grid(spec)
    h = _height_en(unit, e, n)
    s = spec.relief_m / float(h.max() - h.min())
    h0 = float(_height_en(unit, np.zeros(1), np.zeros(1))[0])
    return Terrain(
        spec.lat,
        spec.lon,
        spec.hae - s * h0,
        s * unit.tilt_east,
        s * unit.tilt_north,
        tuple((ce, cn, s * amp, se, sn) for ce, cn, amp, se, sn in hills),
    )


def terrain_stats(spec: SimulationSpec, t: Terrain) -> dict[str, float]:
    """Over the flat footprint: relief, min, max, mean (m), steepest slope and steepest slope
    facing the sensor (rising eastwards, away from it; degrees)."""
    e, n = _footprint_grid(spec, 257)
    h = _height_en(t, e, n)
    m = DEM_MARGIN_M  # and around it, where the targets' contours may reach
    he, hn = footprint_half_extents(spec)
    e2, n2 = np.meshgrid(np.linspace(-he - m, he + m, 257), np.linspace(-hn - m, hn + m, 257))
    ge, gn = _gradient_en(t, e2, n2)
    return {
        "relief_m": float(h.max() - h.min()),
        "min_m": float(h.min()),
        "max_m": float(h.max()),
        "mean_m": float(h.mean()),
        "max_slope_deg": float(np.rad2deg(np.arctan(np.hypot(ge, gn).max()))),
        "max_facing_slope_deg": float(np.rad2deg(np.arctan(max(float(ge.max()), 0.0)))),
    }


def check_terrain(spec: SimulationSpec) -> None:
    """Refuse a terrain whose sensor-facing slopes come near the incidence angle (layover),
    unless `spec.allow_layover`; and a non-positive DEM spacing."""
    if spec.dem_spacing_m <= 0:
        raise ValueError(f"dem_spacing_m must be > 0, not {spec.dem_spacing_m}")
    facing = terrain_stats(spec, terrain_for_spec(spec))["max_facing_slope_deg"]
    if not spec.allow_layover and facing >= spec.incidence_deg - LAYOVER_MARGIN_DEG:
        raise ValueError(
            f"relief {spec.relief_m:g} m makes slopes of {facing:.1f} deg facing the sensor, "
            f"near or past the {spec.incidence_deg:g} deg incidence: layover (allow it with "
            "allow_layover / --allow-layover, or lower the relief or enlarge the scene)"
        )


def terrain_to_dict(t: Terrain) -> dict[str, Any]:
    """The surface's description for a truth file (JSON)."""
    return {"kind": "tilt+gaussian-hills", **asdict(t), "hills": [list(h) for h in t.hills]}


def terrain_from_dict(d: dict[str, Any]) -> Terrain:
    """The surface described by `terrain_to_dict` (e.g. truth['terrain'])."""
    return Terrain(
        float(d["lat0"]),
        float(d["lon0"]),
        float(d["offset_m"]),
        float(d["tilt_east"]),
        float(d["tilt_north"]),
        tuple((h[0], h[1], h[2], h[3], h[4]) for h in d["hills"]),
    )


def dem_layout(
    t: Terrain, latlon: Any, spacing_m: float, margin_m: float = DEM_MARGIN_M
) -> dict[str, Any]:
    """A north-up lat/lon grid at ~spacing_m covering the points `latlon` ((n, 2) degrees) plus
    margin_m: west/north edges, pixel sizes (degrees) and shape (rows, cols)."""
    m, p = map_radii(t.lat0)
    dlat, dlon = float(np.rad2deg(spacing_m / m)), float(np.rad2deg(spacing_m / p))
    pts = np.asarray(latlon, dtype="float64")
    south = pts[:, 0].min() - np.rad2deg(margin_m / m)
    north = pts[:, 0].max() + np.rad2deg(margin_m / m)
    west = pts[:, 1].min() - np.rad2deg(margin_m / p)
    east = pts[:, 1].max() + np.rad2deg(margin_m / p)
    rows, cols = int(np.ceil((north - south) / dlat)), int(np.ceil((east - west) / dlon))
    return {
        "west": float(west),
        "north": float(north),
        "dlat": dlat,
        "dlon": dlon,
        "shape": [rows, cols],
    }


def dem_grid(t: Terrain, layout: dict[str, Any]) -> tuple[Floats, Floats, Floats]:
    """(lat_axis, lon_axis, heights HAE m (rows, cols)) at the pixel centres of `layout`."""
    rows, cols = layout["shape"]
    lat = layout["north"] - (np.arange(rows) + 0.5) * layout["dlat"]
    lon = layout["west"] + (np.arange(cols) + 0.5) * layout["dlon"]
    heights = terrain_height(t, lat[:, None], lon[None, :])
    return lat, lon, heights


def write_dem_geotiff(
    path: str | Path,
    lat_axis: Any,
    lon_axis: Any,
    heights: Any,
    crs: str = ELLIPSOIDAL_CRS,
    undulation: Callable[[Floats, Floats], Any] | None = None,
) -> None:
    """Write float32 `heights` (rows along the descending `lat_axis`, pixel centres in degrees)
    as a tiled GeoTIFF in `crs`, deterministic bytes. With `undulation(lat2d, lon2d)` (geoid
    height N, m) the heights are taken as HAE and written orthometric (HAE - N): pass a
    vertical CRS with it, e.g. ORTHOMETRIC_CRS."""
    import rasterio
    from rasterio.crs import CRS
    from rasterio.transform import Affine

    lat, lon = np.asarray(lat_axis, "float64"), np.asarray(lon_axis, "float64")
    h = np.asarray(heights, dtype="float64")
    if h.shape != (lat.size, lon.size):
        raise ValueError(f"heights {h.shape} do not match the axes ({lat.size}, {lon.size})")
    if undulation is not None:
        if CRS.from_user_input(crs).to_epsg() == 4979:
            raise ValueError("orthometric heights need a vertical CRS, not EPSG:4979")
        lon2d, lat2d = np.meshgrid(lon, lat)
        h = h - np.asarray(undulation(lat2d, lon2d))
    dlat, dlon = float(lat[0] - lat[1]), float(lon[1] - lon[0])
    transform = Affine(dlon, 0.0, lon[0] - dlon / 2, 0.0, -dlat, lat[0] + dlat / 2)
    profile = {
        "driver": "GTiff",
        "width": lon.size,
        "height": lat.size,
        "count": 1,
        "dtype": "float32",
        "crs": CRS.from_user_input(crs),
        "transform": transform,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "deflate",
        "predictor": 3,
    }
    Path(path).unlink(missing_ok=True)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(h.astype("float32"), 1)


def project_to_terrain(
    sicd_xml: str, t: Terrain, pixels: Any, hae_min: float, hae_max: float
) -> list[Floats]:
    """Every intersection (k, 3) ECEF, by increasing HAE, of each pixel's (row, col) R/Rdot
    contour with the analytic surface, by sarkit's scalar DEM projection."""
    import lxml.etree
    import sarkit.sicd.projection as sicdproj
    import sarkit.wgs84

    tree = lxml.etree.ElementTree(lxml.etree.fromstring(sicd_xml.encode()))
    meta = sicdproj.MetadataParams.from_xml(tree)
    ns = {"s": tree.getroot().nsmap[None]}

    def num(p: str) -> float:
        return float(tree.findtext(p, namespaces=ns) or "nan")

    scp = np.array([num(f"s:GeoData/s:SCP/s:ECF/s:{a}") for a in "XYZ"])
    scp_px = num("s:ImageData/s:SCPPixel/s:Row"), num("s:ImageData/s:SCPPixel/s:Col")
    first = num("s:ImageData/s:FirstRow"), num("s:ImageData/s:FirstCol")
    ss = num("s:Grid/s:Row/s:SS"), num("s:Grid/s:Col/s:SS")

    def above(ecf: Any) -> Floats:
        llh = sarkit.wgs84.cartesian_to_geodetic(np.asarray(ecf))
        return np.asarray(llh[..., 2] - terrain_height(t, llh[..., 0], llh[..., 1]))

    out = []
    for row, col in np.asarray(pixels, dtype="float64").reshape(-1, 2):
        xy = [(row + first[0] - scp_px[0]) * ss[0], (col + first[1] - scp_px[1]) * ss[1]]
        pset = sicdproj.compute_projection_sets(meta, xy)
        s = sicdproj.r_rdot_to_dem_surface(
            meta.LOOK,
            scp,
            pset,
            above,
            hae_min=hae_min,
            hae_max=hae_max,
            delta_dist_dem=PROJECTION_STEP_M,
        )
        s = np.asarray(s, dtype="float64").reshape(-1, 3)
        out.append(s[np.argsort(sarkit.wgs84.cartesian_to_geodetic(s)[:, 2])])
    return out


def terrain_truth(
    path: str | Path, spec: SimulationSpec, sicd: Any, truth: dict[str, Any]
) -> dict[str, Any]:
    """Write the scene's DEM at `path` + '.dem.tif' (EPSG:4979) and return `truth` with its
    targets moved onto the terrain (their lowest-HAE intersection; all counted) and the
    terrain's description, statistics and DEM layout added."""
    import sarkit.wgs84
    from sarpy.geometry.point_projection import image_to_ground_hae

    t = terrain_for_spec(spec)
    stats = terrain_stats(spec, t)
    img = sicd.ImageData
    corners = np.array(
        [[0, 0], [0, img.NumCols - 1], [img.NumRows - 1, img.NumCols - 1], [img.NumRows - 1, 0]],
        dtype="float64",
    )
    # the terrain beyond the image's own footprint rises and falls too: the DEM covers the
    # corners projected a whole relief below and above it, so every contour meets it
    reach = (stats["min_m"] - spec.relief_m, stats["max_m"] + spec.relief_m)
    ground = [image_to_ground_hae(corners, sicd, hae0=h) for h in reach]
    llh = sarkit.wgs84.cartesian_to_geodetic(np.concatenate(ground))
    layout = dem_layout(t, llh[:, :2], spec.dem_spacing_m)
    lat, lon, heights = dem_grid(t, layout)
    dem_path = Path(str(path) + ".dem.tif")
    write_dem_geotiff(dem_path, lat, lon, heights)

    xml = sicd.to_xml_string(tag="SICD", check_validity=False)
    pixels = [(d["row"], d["col"]) for d in truth["targets"]]
    hits = project_to_terrain(xml, t, pixels, float(heights.min()) - 1, float(heights.max()) + 1)
    targets = []
    for d, s in zip(truth["targets"], hits, strict=True):
        if not len(s):
            raise ValueError(f"target at pixel ({d['row']:.1f}, {d['col']:.1f}) misses the terrain")
        g = sarkit.wgs84.cartesian_to_geodetic(s[0])
        ge, gn = terrain_gradient(t, g[0], g[1])
        normal = terrain_normal_enu(t, g[0], g[1])
        east, north, up = (f(g) for f in (sarkit.wgs84.east, sarkit.wgs84.north, sarkit.wgs84.up))
        targets.append(
            {
                **d,
                "ecf": [float(x) for x in s[0]],
                "llh": [float(x) for x in g],
                "intersections": len(s),
                "layover": len(s) > 1,
                "slope_deg": float(np.rad2deg(np.arctan(np.hypot(ge, gn)))),
                "gradient_en": [float(ge), float(gn)],
                "normal_enu": [float(x) for x in normal],
                "normal_ecf": [float(x) for x in normal @ np.array([east, north, up])],
            }
        )
    return {
        **truth,
        "targets": targets,
        "terrain": terrain_to_dict(t),
        "terrain_stats": stats,
        "layover_targets": sum(1 for d in targets if d["layover"]),
        "target_choice": "the lowest-HAE intersection of each pixel's R/Rdot contour with the "
        "analytic terrain (sarkit r_rdot_to_dem_surface); 'intersections' counts them all",
        "dem": {
            "file": dem_path.name,
            "crs": ELLIPSOIDAL_CRS,
            "spacing_m": spec.dem_spacing_m,
            **layout,
        },
    }
