"""Land cover per sample (as SARLAND adds it to SARLO-80): a land-cover raster of class
codes (ESA WorldCover, Copernicus Global Land Cover: a GeoTIFF, COG or VRT on any fsspec
URL, in any CRS) sampled at every pixel of a tile, nearest neighbour, the way the DEM is
brought into the SAR grid: each pixel's latitude and longitude from the scene's tie points,
into the raster's CRS (pyproj), then the raster pixel holding it. The class map is shipped as
KEY.landcover.png (the codes themselves, 8 bits) and meta.json records each code's share.

Codes are the raster's own (WorldCover: 10 tree cover ... 100 moss and lichen); a pixel
outside the raster or at its nodata value gets the raster's nodata code (0 when it has none)
and counts in `nodata_fraction`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sarlo_dask.errors import redact

LANDCOVER_DTYPES = ("uint8",)
"""class codes 0-255, as the PNG holds them (WorldCover's and Copernicus' rasters are uint8)"""


class LandCoverError(ValueError):
    """A land-cover raster that cannot be used: one line, what and why."""


def open_landcover(url: str, storage_options: dict[str, Any] | None = None) -> Any:
    """The raster, open (rasterio), checked: one band of uint8 codes with a CRS; else
    LandCoverError naming it."""
    from sarlo_dask.geometry.dem import open_raster

    try:
        src = open_raster(url, storage_options)
    except Exception as exc:  # rasterio's errors: missing, not a raster
        raise LandCoverError(
            f"land cover {redact(url)}: not readable as a raster ({exc})"
        ) from None
    why = (
        f"{src.count} bands (one band of class codes)"
        if src.count != 1
        else f"{src.dtypes[0]} pixels (class codes 0-255: uint8)"
        if src.dtypes[0] not in LANDCOVER_DTYPES
        else "no CRS"
        if src.crs is None
        else f"nodata {src.nodata} (not a code 0-255)"
        if src.nodata is not None and not (0 <= src.nodata <= 255 and src.nodata == int(src.nodata))
        else ""
    )
    if why:
        src.close()
        raise LandCoverError(f"land cover {redact(url)}: {why}")
    return src


class HeldLandCover:
    """A land-cover raster a worker holds open between its tiles: one reader at a time (GDAL
    handles are not thread-safe), closed when the worker's table drops it."""

    def __init__(self, url: str, storage_options: dict[str, Any] | None) -> None:
        import threading

        self.lock = threading.Lock()
        self.src = open_landcover(url, storage_options)

    def codes(self, lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, int]:
        """`sample_codes` under the lock, and the raster's nodata code."""
        with self.lock:
            return sample_codes(self.src, lat, lon), nodata_code(self.src)

    def close(self) -> None:
        with self.lock:
            self.src.close()


def nodata_code(src: Any) -> int:
    """The raster's nodata code: its own, else 0."""
    return int(src.nodata) if src.nodata is not None else 0


def probe_landcover(url: str, storage_options: dict[str, Any] | None = None) -> None:
    """LandCoverError unless the raster opens and holds class codes (headers only)."""
    open_landcover(url, storage_options).close()


def sample_codes(src: Any, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """The raster's code at each (lat, lon) (degrees, any shape), nearest neighbour: the
    raster pixel holding the point; its nodata code (0 when none) outside the raster."""
    from pyproj import Transformer
    from rasterio.windows import Window

    to_crs = Transformer.from_crs("EPSG:4326", src.crs, always_xy=True)
    x, y = to_crs.transform(np.asarray(lon, "float64"), np.asarray(lat, "float64"))
    col, row = ~src.transform @ (x, y)
    col, row = np.floor(col).astype(np.int64), np.floor(row).astype(np.int64)
    out = np.full(np.shape(lat), nodata_code(src), dtype=np.uint8)
    inside = (row >= 0) & (row < src.height) & (col >= 0) & (col < src.width)
    if inside.any():
        r0, r1 = int(row[inside].min()), int(row[inside].max()) + 1
        c0, c1 = int(col[inside].min()), int(col[inside].max()) + 1
        block = src.read(1, window=Window(c0, r0, c1 - c0, r1 - r0))  # only the tile's window
        out[inside] = block[row[inside] - r0, col[inside] - c0]
    return out


def class_shares(codes: np.ndarray, nodata: int) -> dict[str, Any]:
    """meta.json's `landcover` shares of a class map: {fractions: {code: share of the tile's
    pixels}, nodata_fraction} (codes as strings, in order; the nodata code among them)."""
    values, counts = np.unique(np.asarray(codes), return_counts=True)
    n = int(np.asarray(codes).size)
    fractions = {str(int(v)): int(c) / n for v, c in zip(values, counts, strict=True)}
    return {"fractions": fractions, "nodata_fraction": fractions.get(str(nodata), 0.0)}


def tile_landcover(
    held: HeldLandCover, lat: np.ndarray, lon: np.ndarray, name: str
) -> tuple[np.ndarray, dict[str, Any]]:
    """A tile's class map from its pixels' (lat, lon) grids, and meta.json's `landcover`."""
    codes, nodata = held.codes(lat, lon)
    meta = {"source": redact(name), "nodata_code": nodata, **class_shares(codes, nodata)}
    return codes, meta
