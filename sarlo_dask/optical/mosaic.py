"""A georeferenced optical image covering a WGS84 bbox: XYZ tiles mosaicked, or a GeoTIFF window.

`Mosaic.project(lon, lat)` gives continuous array coordinates (column, row) whose integers are
pixel centres, the convention `warp.bilinear` samples with.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from sarlo_dask.optical.source import OpticalSource, TileFailure, XYZSource
from sarlo_dask.optical.tilemath import TILE_PX, global_pixel, tiles_for_bbox, tiles_touching


@dataclass
class Mosaic:
    image: np.ndarray
    """(H, W, 4) uint8 RGBA: alpha 255 where there is optical data, 0 where none
    (missing tile, failure, nodata)"""
    zoom: int | None = None
    origin: tuple[int, int] = (0, 0)
    """global pixel of the mosaic's upper-left corner (XYZ)"""
    crs: str | None = None
    transform: tuple[float, ...] | None = None
    """rasterio affine (a, b, c, d, e, f) of the window (GeoTIFF)"""
    failures: list[str] = field(default_factory=list)
    tiles: int = 0
    missing: int = 0

    def project(self, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.zoom is not None:
            x, y = global_pixel(lon, lat, self.zoom)
            return x - self.origin[0] - 0.5, y - self.origin[1] - 0.5
        from affine import Affine
        from rasterio.warp import transform

        xs, ys = transform("EPSG:4326", self.crs, np.ravel(lon).tolist(), np.ravel(lat).tolist())
        inv = ~Affine(*self.transform)  # type: ignore[misc]
        col, row = inv @ (np.asarray(xs), np.asarray(ys))
        return (
            np.asarray(col).reshape(np.shape(lon)) - 0.5,
            np.asarray(row).reshape(np.shape(lat)) - 0.5,
        )


def write_geotiff(mosaic: Mosaic, path: str) -> None:
    """The mosaic as a deflate-compressed RGB GeoTIFF with an internal mask (as tms_to_geotiff
    writes: EPSG:3857 for XYZ mosaics; a GeoTIFF window keeps its own CRS)."""
    import rasterio
    from affine import Affine

    if mosaic.zoom is not None:
        size_m = 2 * np.pi * 6378137.0 / (TILE_PX * 2**mosaic.zoom)
        west = mosaic.origin[0] * size_m - np.pi * 6378137.0
        north = np.pi * 6378137.0 - mosaic.origin[1] * size_m
        transform, crs = Affine(size_m, 0, west, 0, -size_m, north), "EPSG:3857"
    else:
        assert mosaic.transform is not None and mosaic.crs is not None
        transform, crs = Affine(*mosaic.transform), mosaic.crs
    h, w = mosaic.image.shape[:2]
    with (
        rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True),
        rasterio.open(
            path,
            "w",
            driver="GTiff",
            width=w,
            height=h,
            count=3,
            dtype="uint8",
            crs=crs,
            transform=transform,
            compress="deflate",
            tiled=True,
        ) as dst,
    ):
        dst.write(np.moveaxis(mosaic.image[..., :3], -1, 0))
        dst.write_mask(mosaic.image[..., 3])


def _decode(data: bytes) -> np.ndarray:
    """RGBA pixels; a tile's own transparency marks pixels without data."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        if im.mode == "RGB":
            # Pillow holds RGB as 4 bytes a pixel, the 4th 255: this packing is one copy,
            # where convert("RGBA") costs as much as the decode itself (read-only result)
            px = np.frombuffer(im.tobytes("raw", "RGBX"), dtype=np.uint8)
            px = px.reshape(im.height, im.width, 4)
            if px[0, :, 3].min() != 255:  # the padding is checked (a row), not assumed
                px = px.copy()
                px[..., 3] = 255
            return px
        return np.asarray(im.convert("RGBA"))


class _DecodedTiles:
    """This process's most recently decoded XYZ tiles (RGBA, 256 KiB each).

    Tiles of a scene overlap their neighbours by half, so each optical tile is wanted by
    about four SAR tiles: decoding it once per process instead saves most of the PNG work.
    """

    def __init__(self, capacity: int = 2048) -> None:
        self.capacity = capacity
        self.items: OrderedDict[tuple[str, int, int, int], np.ndarray] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: tuple[str, int, int, int]) -> np.ndarray | None:
        with self.lock:
            px = self.items.get(key)
            if px is not None:
                self.items.move_to_end(key)
            return px

    def resize(self, megabytes: int) -> None:
        """Keep at most `megabytes` of tiles (the oldest go first)."""
        with self.lock:
            self.capacity = megabytes * (1 << 20) // (TILE_PX * TILE_PX * 4)
            while len(self.items) > self.capacity:
                self.items.popitem(last=False)

    def put(self, key: tuple[str, int, int, int], px: np.ndarray) -> None:
        with self.lock:
            self.items[key] = px
            while len(self.items) > self.capacity:
                self.items.popitem(last=False)


DECODED = _DecodedTiles()


def xyz_tiles(
    zoom: int,
    west: float,
    south: float,
    east: float,
    north: float,
    footprint: np.ndarray | None = None,
) -> tuple[tuple[int, int, int, int], list[tuple[int, int, int]]]:
    """((x0, y0, x1, y1) the bbox's inclusive tile range, the (z, x, y) tiles `xyz_mosaic`
    fetches there): all of the range, or with a `footprint` only the tiles it touches."""
    x0, y0, x1, y1 = tiles_for_bbox(west, south, east, north, zoom)
    if footprint is None:
        tiles = [(zoom, x, y) for y in range(y0, y1 + 1) for x in range(x0, x1 + 1)]
    else:
        tiles = [(zoom, x, y) for x, y in tiles_touching(footprint, x0, y0, x1, y1)]
    return (x0, y0, x1, y1), tiles


def xyz_mosaic(
    source: XYZSource,
    west: float,
    south: float,
    east: float,
    north: float,
    footprint: np.ndarray | None = None,
    scratch: bool = False,
) -> Mosaic:
    """The XYZ tiles over the bbox; with a `footprint` (a convex polygon in global pixels),
    only the tiles it touches are fetched, the rest of the bbox stays empty (alpha 0).

    `scratch`: the image lives in this thread's reused buffer (a mosaic is ~100 MB at zoom
    19, and fresh pages cost as much as filling them), valid until the thread's next call.
    """
    z = source.zoom
    (x0, y0, x1, y1), tiles = xyz_tiles(z, west, south, east, north, footprint)
    h, w = (y1 - y0 + 1) * TILE_PX, (x1 - x0 + 1) * TILE_PX
    image = (_scratch(h * w * 4) if scratch else np.empty(h * w * 4, np.uint8)).reshape(h, w, 4)
    filled: set[tuple[int, int, int]] = set()
    m = Mosaic(image, zoom=z, origin=(x0 * TILE_PX, y0 * TILE_PX), tiles=len(tiles))
    tag = repr(source)  # the full spec: two folders or servers never share entries
    decoded = {t: DECODED.get((tag, *t)) for t in tiles}
    fetched = source.fetch([t for t in tiles if decoded[t] is None])
    for t in tiles:
        _, x, y = t
        rows = slice((y - y0) * TILE_PX, (y - y0 + 1) * TILE_PX)
        cols = slice((x - x0) * TILE_PX, (x - x0 + 1) * TILE_PX)
        cached = decoded[t]
        if cached is not None:
            image[rows, cols] = cached
            filled.add(t)
            continue
        got = fetched[t]
        if got is None:
            m.missing += 1
        elif isinstance(got, TileFailure):
            m.failures.append(got.reason)
        else:
            try:
                px = _decode(got)
            except Exception:
                m.failures.append(f"tile {z}/{x}/{y}: undecodable image")
                continue
            if px.shape[:2] != (TILE_PX, TILE_PX):
                m.failures.append(f"tile {z}/{x}/{y}: {px.shape[1]}x{px.shape[0]} px, not 256")
                continue
            image[rows, cols] = px
            filled.add(t)
            DECODED.put((tag, *t), px)
    for y in range(y0, y1 + 1):  # what no tile filled has no data: alpha 0
        for x in range(x0, x1 + 1):
            if (z, x, y) not in filled:
                r, c = (y - y0) * TILE_PX, (x - x0) * TILE_PX
                image[r : r + TILE_PX, c : c + TILE_PX] = 0
    return m


_SCRATCH = threading.local()


def _scratch(nbytes: int) -> np.ndarray:
    """This thread's reused uint8 buffer, first `nbytes` (grown when too small)."""
    buf = getattr(_SCRATCH, "buf", None)
    if buf is None or buf.size < nbytes:
        buf = _SCRATCH.buf = np.empty(nbytes, dtype=np.uint8)
    return buf[:nbytes]


def build_mosaic(
    source: OpticalSource,
    west: float,
    south: float,
    east: float,
    north: float,
    footprint: np.ndarray | None = None,
    scratch: bool = False,
) -> Mosaic:
    """The optical image over a bbox; `footprint` (global XYZ pixels) limits XYZ fetches;
    `scratch` as in `xyz_mosaic`. An XYZ source is mosaicked from its tiles; any other
    reads its window itself (optical.source)."""
    if isinstance(source, XYZSource):
        return xyz_mosaic(source, west, south, east, north, footprint, scratch)
    return source.window(west, south, east, north)
