"""Digital elevation models: read the window a scene needs, as heights above the ellipsoid.

A DEM is a GeoTIFF or COG (a local path or any fsspec URL, e.g. Copernicus GLO-30 tiles on
public S3), a VRT, or a folder of such tiles. It is read once per scene, only the window that
covers the scene, into a `DemGrid`: heights above the WGS 84 ellipsoid (HAE) at pixel centres
of a regular lat/lon grid. Orthometric heights become HAE (`datums`): a DEM that says nothing
of its vertical datum and is not named one is refused rather than guessed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from sarlo_dask.errors import DemError
from sarlo_dask.geometry.datums import check_crs

DEM_SUFFIXES = (".tif", ".tiff", ".vrt")
MAX_FOLDER_FILES = 1000
"""a folder's rasters are all opened for each scene: a larger collection wants a VRT"""


@dataclass(frozen=True, eq=False)
class DemGrid:
    """Heights above the WGS 84 ellipsoid (m, NaN where the DEM has none) at the pixel centres
    lat0 + i * dlat, lon0 + j * dlon (degrees; dlat < 0 for north-up rasters)."""

    heights: np.ndarray
    lat0: float
    lon0: float
    dlat: float
    dlon: float
    name: str
    """the DEM's URL without credentials, as meta.json records it"""
    ground: tuple[float, float] | None = None
    """the lowest and highest heights under the scene, when known (see surface_range)"""

    def height(self, lat: Any, lon: Any) -> np.ndarray:
        """Bilinear heights at (lat, lon) degrees; NaN outside the grid or next to no-data."""
        from scipy.ndimage import map_coordinates

        lat, lon = np.asarray(lat, dtype="float64"), np.asarray(lon, dtype="float64")
        coords = np.stack([(lat - self.lat0) / self.dlat, (lon - self.lon0) / self.dlon])
        out = map_coordinates(
            self.heights, coords.reshape(2, -1), order=1, mode="constant", cval=np.nan
        )
        return np.asarray(out.reshape(lat.shape))

    def pixel_m(self) -> tuple[float, float]:
        """(north, east) size of a pixel on the ground at the grid's centre, metres."""
        from sarlo_dask.geometry.geolocation import metres_per_degree

        north, east = metres_per_degree(self.lat0 + self.dlat * (self.heights.shape[0] - 1) / 2)
        return float(abs(self.dlat) * north), float(abs(self.dlon) * east)

    def spacing_m(self) -> float:
        """The finer of the two pixel spacings, metres on the ground at the grid's centre."""
        return min(self.pixel_m())

    def max_slope(self) -> float:
        """An upper bound of the terrain's steepest slope (rise over run, any direction): the
        steepest steps between neighbouring heights along each axis, combined."""
        return self._max_slope

    @cached_property
    def _max_slope(self) -> float:  # once per grid: every projection call asks
        north, east = self.pixel_m()
        gi = np.abs(np.diff(self.heights, axis=0)) / north
        gj = np.abs(np.diff(self.heights, axis=1)) / east
        return float(np.hypot(np.nanmax(gi, initial=0.0), np.nanmax(gj, initial=0.0)))

    def surface_range(self) -> tuple[float, float]:
        """The lowest and highest heights of the ground under the scene (`scene_dem` finds
        them) or, for a grid read otherwise, of the whole grid: the heights every pixel's
        contour is searched between."""
        return self.ground if self.ground is not None else self.hae_range()

    def hae_range(self) -> tuple[float, float]:
        """The lowest and highest heights of the grid (DemError when it has none)."""
        ok = self.heights[np.isfinite(self.heights)]
        if not ok.size:
            raise DemError(f"DEM {self.name}: no heights in the window read")
        return float(ok.min()), float(ok.max())


def to_hae(grid: DemGrid, transformer: Any | None) -> DemGrid:
    """The grid with its heights converted by `datum_transformer`'s result (None: as they are)."""
    if transformer is None:
        return grid
    n_i, n_j = grid.heights.shape
    lat = grid.lat0 + grid.dlat * np.arange(n_i)
    lon = grid.lon0 + grid.dlon * np.arange(n_j)
    lo, la = np.meshgrid(lon, lat)
    ok = np.isfinite(grid.heights)
    out = np.full(grid.heights.shape, np.nan, dtype="float32")
    try:
        _, _, h = transformer.transform(lo[ok], la[ok], grid.heights[ok], errcheck=True)
    except Exception as exc:  # pyproj's ProjError: e.g. outside the geoid grid
        raise DemError(f"DEM {grid.name}: heights not converted to HAE ({exc})") from None
    out[ok] = h
    return DemGrid(out, grid.lat0, grid.lon0, grid.dlat, grid.dlon, grid.name)


def _listing(url: str, storage_options: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """The DEM's raster files with fsspec's details of each (one listing for a folder)."""
    from sarlo_dask.store import filesystem

    fs, path = filesystem(url, storage_options)
    proto = url.split("://", 1)[0] + "://" if "://" in url else ""
    try:
        if url.lower().endswith(DEM_SUFFIXES):
            return {url: fs.info(path)}
        if not fs.isdir(path):
            raise DemError(f"DEM {url}: neither a GeoTIFF/VRT file nor a folder of them")
        found = fs.find(path, detail=True)
    except FileNotFoundError:
        raise DemError(f"DEM {url}: no such file or folder") from None
    except OSError as exc:
        raise DemError(f"DEM {url}: not readable ({exc})") from None
    files = {
        (proto + p if proto and "://" not in p else p): info
        for p, info in sorted(found.items())
        if p.lower().endswith(DEM_SUFFIXES)
    }
    if not files:
        raise DemError(f"DEM {url}: the folder holds no .tif, .tiff or .vrt file")
    if len(files) > MAX_FOLDER_FILES:
        raise DemError(
            f"DEM {url}: the folder holds {len(files)} rasters, too many to open for each "
            f"scene (> {MAX_FOLDER_FILES}): give a VRT of them (gdalbuildvrt) or a folder of "
            "the tiles over your scenes"
        )
    return files


def dem_files(url: str, storage_options: dict[str, Any] | None = None) -> list[str]:
    """The raster files of a DEM: the URL itself, or the .tif/.tiff/.vrt files under a folder
    (sorted: the first one listed wins where tiles overlap)."""
    return list(_listing(url, storage_options))


def dem_versions(url: str, storage_options: dict[str, Any] | None = None) -> dict[str, str]:
    """Each raster file of the DEM and its size and version (what changes with its bytes)."""
    from sarlo_dask.errors import redact
    from sarlo_dask.store import version_of

    return {redact(f): version_of(info) for f, info in _listing(url, storage_options).items()}


def open_raster(url: str, storage_options: dict[str, Any] | None) -> Any:
    """A raster opened by rasterio: a local path as it is, any other URL through fsspec."""
    import rasterio

    from sarlo_dask.store import filesystem, is_local

    fs, path = filesystem(url, storage_options)
    if is_local(fs):
        return rasterio.open(path)
    return rasterio.open(path, opener=fs)  # range reads through fsspec


def probe_dem(
    url: str, vertical_datum: str = "auto", storage_options: dict[str, Any] | None = None
) -> None:
    """DemError unless the DEM's first file opens as a raster in a geographic CRS whose heights
    can be turned into HAE (headers only: the check a build makes before any work)."""
    from sarlo_dask.errors import redact

    first = dem_files(url, storage_options)[0]
    try:
        with open_raster(first, storage_options) as src:
            crs = src.crs
    except Exception as exc:  # rasterio's errors: not a raster, unreadable
        raise DemError(f"DEM {redact(first)}: not readable as a raster ({exc})") from None
    check_crs(crs, vertical_datum, redact(url))


@dataclass(frozen=True)
class OpenDem:
    """A DEM's rasters, open and checked (geographic, WGS 84, north-up, one grid), with the
    transformer that turns their heights into HAE: windows are read from it (`read_window`)."""

    sets: list[Any]
    transformer: Any | None
    name: str


@contextmanager
def open_dem(
    url: str, vertical_datum: str = "auto", storage_options: dict[str, Any] | None = None
) -> Iterator[OpenDem]:
    """The DEM's rasters opened once (a scene reads several windows from them), closed after.
    DemError (one line) when they cannot be used."""
    from contextlib import ExitStack

    from sarlo_dask.errors import redact

    name = redact(url)
    with ExitStack() as stack:
        sets = []
        for f in dem_files(url, storage_options):
            try:
                sets.append(stack.enter_context(open_raster(f, storage_options)))
            except Exception as exc:  # rasterio's errors: not a raster, unreadable
                raise DemError(f"DEM {redact(f)}: not readable as a raster ({exc})") from None
        first = sets[0]
        transformer = check_crs(first.crs, vertical_datum, name)
        t = first.transform
        if t.e >= 0 or t.b or t.d:
            raise DemError(f"DEM {name}: not a north-up raster ({tuple(t)[:6]}): warp it first")
        other = [redact(s.name) for s in sets if s.res != first.res or s.crs != first.crs]
        if other:  # merge would resample them: a DEM's heights are used as they are
            raise DemError(
                f"DEM {name}: {other[0]} is on another grid than {redact(first.name)} "
                f"({len(other)} such files): give a folder of tiles on one grid, or a VRT"
            )
        yield OpenDem(sets, transformer, name)


def read_window(dem: OpenDem, bbox: tuple[float, float, float, float]) -> DemGrid:
    """The window covering `bbox` (west, south, east, north, degrees) as HAE, on the first
    file's own pixel grid (never resampled). DemError (one line) when it has no heights."""
    from rasterio.merge import merge

    t = dem.sets[0].transform
    west, south, east, north = bbox
    # snap outward to the first file's pixel edges: merge then copies pixels, never shifts
    c0, c1 = np.floor((west - t.c) / t.a), np.ceil((east - t.c) / t.a)
    r0, r1 = np.floor((north - t.f) / t.e), np.ceil((south - t.f) / t.e)
    bounds = (t.c + c0 * t.a, t.f + r1 * t.e, t.c + c1 * t.a, t.f + r0 * t.e)
    data, out_t = merge(dem.sets, bounds=bounds, masked=True, dtype="float64")
    heights = np.ma.filled(data[0].astype("float32"), np.nan)  # DEMs hold float32 or less
    if not np.isfinite(heights).any():
        raise DemError(
            f"DEM {dem.name} has no heights in {west:.5f}, {south:.5f}, {east:.5f}, "
            f"{north:.5f} (west, south, east, north): it does not cover the scene"
        )
    lat0, lon0 = out_t.f + 0.5 * out_t.e, out_t.c + 0.5 * out_t.a
    grid = DemGrid(heights, lat0, lon0, dlat=out_t.e, dlon=out_t.a, name=dem.name)
    return to_hae(grid, dem.transformer)


def read_dem(
    url: str,
    bbox: tuple[float, float, float, float],
    vertical_datum: str = "auto",
    storage_options: dict[str, Any] | None = None,
) -> DemGrid:
    """The DEM's window covering `bbox` as HAE (`open_dem` then `read_window`)."""
    with open_dem(url, vertical_datum, storage_options) as dem:
        return read_window(dem, bbox)


Box = tuple[float, float, float, float]
"""west, south, east, north, degrees"""
GROWTH_STEPS = 4
"""times the height range of a scene's ground, and the region it spans, may grow (it stops
growing at once unless the terrain beyond the image rises or falls as fast as the look)"""


def _bbox(llh: np.ndarray, pad_m: float) -> Box:
    """The box of lat/lon points (rows lat, lon, ...) with `pad_m` metres around."""
    from sarlo_dask.geometry.geolocation import metres_per_degree

    north, east = metres_per_degree(float(np.mean(llh[:, 0])))
    dlat, dlon = pad_m / north, pad_m / east
    return (
        float(llh[:, 1].min() - dlon),
        float(llh[:, 0].min() - dlat),
        float(llh[:, 1].max() + dlon),
        float(llh[:, 0].max() + dlat),
    )


def _inside(inner: Box, outer: Box) -> bool:
    return (
        inner[0] >= outer[0]
        and inner[1] >= outer[1]
        and inner[2] <= outer[2]
        and (inner[3] <= outer[3])
    )


def _union(a: Box, b: Box) -> Box:
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def _heights_in(grid: DemGrid, box: Box) -> np.ndarray:
    """The grid's heights whose pixel centres lie in `box` (NaN: no data)."""
    lat = grid.lat0 + grid.dlat * np.arange(grid.heights.shape[0])
    lon = grid.lon0 + grid.dlon * np.arange(grid.heights.shape[1])
    rows = (lat >= box[1]) & (lat <= box[3])
    cols = (lon >= box[0]) & (lon <= box[2])
    return grid.heights[np.ix_(rows, cols)]


def scene_dem(
    url: str,
    sicd: Any,
    vertical_datum: str = "auto",
    storage_options: dict[str, Any] | None = None,
) -> DemGrid:
    """The window of the raster DEM at `url` a whole SICD image needs (`scene_window`)."""
    with open_dem(url, vertical_datum, storage_options) as dem:
        return scene_window(lambda box: read_window(dem, box), sicd)


def scene_window(read: Callable[[Box], DemGrid], sicd: Any) -> DemGrid:
    """The heights a whole SICD image needs, and the height range of its ground, from
    `read(box)`: a height source's grid over a (west, south, east, north) box.

    The ground under the image lies where its edges project at heights between the lowest
    and the highest ground there: from the SCP's height, that range and that region grow
    together until the heights in the region stay inside the range (at most GROWTH_STEPS
    times: a pixel whose ground lies beyond is then sampled up to the DEM's edge). The window
    is the region plus, on every side, how far a shadow ray travels to climb the range, and a
    few DEM pixels for the bilinear neighbours. DemError (one line) when it cannot be had."""
    from sarlo_dask.geometry.geolocation import (
        ecf_to_llh,
        project_pixels,
        scene_size,
        tie_point_axis,
    )

    xml = sicd if isinstance(sicd, str) else sicd.to_xml_string(tag="SICD")
    n_rows, n_cols, scp_h = scene_size(xml)
    r, c = tie_point_axis(n_rows, max(1, n_rows // 8)), tie_point_axis(n_cols, max(1, n_cols // 8))
    edge_r = np.concatenate([r, r, np.zeros_like(c), np.full_like(c, n_rows - 1)])
    edge_c = np.concatenate([np.zeros_like(r), np.full_like(r, n_cols - 1), c, c])

    def footprint(h: float) -> np.ndarray:
        return ecf_to_llh(project_pixels(xml, edge_r, edge_c, h))

    lo = hi = scp_h
    box = _bbox(footprint(scp_h), 500.0)
    grid = read(box)
    for grow in range(GROWTH_STEPS + 1):
        low, high = footprint(lo - 1.0), footprint(hi + 1.0)
        margin = 2 * grid.spacing_m()
        # a ray to the sensor climbs (hi - lo) over (hi - lo) tan(incidence) of ground, and
        # the contours rise tan(incidence) over the shift of the edges from lo to hi
        shift = float(np.max(np.hypot(*_shift_m(low, high))))
        reach = (hi - lo) ** 2 / max(shift, 1e-6) if hi > lo else 0.0
        window = _bbox(np.concatenate([low, high]), margin + reach + 8 * grid.spacing_m() + 50.0)
        if not _inside(window, box):
            box = _union(window, box)
            grid = read(box)
        if grow == GROWTH_STEPS:
            break
        ground = _heights_in(grid, _bbox(np.concatenate([low, high]), margin))
        if not np.isfinite(ground).any():
            raise DemError(f"DEM {grid.name} has no heights under the scene: it does not cover it")
        new_lo, new_hi = float(np.nanmin(ground)), float(np.nanmax(ground))
        if new_lo >= lo and new_hi <= hi:
            break
        lo, hi = min(lo, new_lo), max(hi, new_hi)
    g = grid
    return DemGrid(g.heights, g.lat0, g.lon0, g.dlat, g.dlon, g.name, (lo, hi))


def _shift_m(low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(north, east) metres between the same edge points projected at two heights."""
    from sarlo_dask.geometry.geolocation import metres_per_degree

    north, east = metres_per_degree(low[:, 0])
    return (high[:, 0] - low[:, 0]) * north, (high[:, 1] - low[:, 1]) * east
