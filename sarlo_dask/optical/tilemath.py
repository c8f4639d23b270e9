"""Web Mercator (EPSG:3857) XYZ tile math: mercantile for tiles, NumPy for many points."""

from __future__ import annotations

import mercantile
import numpy as np

TILE_PX = 256
EARTH_RADIUS = 6378137.0


def global_pixel(lon: np.ndarray, lat: np.ndarray, zoom: int) -> tuple[np.ndarray, np.ndarray]:
    """Continuous global pixel coordinates (x right, y down) of WGS84 points at `zoom`.

    Pixel (0, 0)'s corner is the north-west corner of tile (0, 0); the same convention as
    mercantile.xy and mercantile.bounds (tested against them).
    """
    lon = np.asarray(lon, dtype="float64")
    lat = np.clip(np.asarray(lat, dtype="float64"), -85.0511287798066, 85.0511287798066)
    scale = TILE_PX * 2.0**zoom
    x = (lon + 180.0) / 360.0 * scale
    y = (1.0 - np.log(np.tan(np.radians(lat)) + 1.0 / np.cos(np.radians(lat))) / np.pi) / 2 * scale
    return x, y


def lonlat_of_pixel(x: np.ndarray, y: np.ndarray, zoom: int) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of global_pixel."""
    scale = TILE_PX * 2.0**zoom
    lon = np.asarray(x, dtype="float64") / scale * 360.0 - 180.0
    n = np.pi * (1 - 2 * np.asarray(y, dtype="float64") / scale)
    lat = np.degrees(np.arctan(np.sinh(n)))
    return lon, lat


def ground_resolution(lat: float, zoom: int) -> float:
    """Metres per pixel at latitude `lat`."""
    return float(2 * np.pi * EARTH_RADIUS * np.cos(np.radians(lat)) / (TILE_PX * 2**zoom))


def tiles_for_bbox(
    west: float, south: float, east: float, north: float, zoom: int
) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) inclusive tile range covering the bbox, from mercantile."""
    ul = mercantile.tile(west, north, zoom)
    lr = mercantile.tile(east, south, zoom)
    return ul.x, ul.y, lr.x, lr.y


def tiles_touching(
    polygon: np.ndarray, x0: int, y0: int, x1: int, y1: int
) -> list[tuple[int, int]]:
    """(x, y) of the tiles in x0..x1, y0..y1 (inclusive) whose square meets a convex polygon
    given in global pixel coordinates ((N, 2), x right, y down), by separating axes."""
    poly = np.asarray(polygon, dtype="float64")
    gx, gy = np.meshgrid(np.arange(x0, x1 + 1), np.arange(y0, y1 + 1))
    xs, ys = gx.ravel(), gy.ravel()
    corners = np.stack(
        [np.stack([xs + dx, ys + dy], -1) * TILE_PX for dx in (0, 1) for dy in (0, 1)], 1
    )  # (T, 4, 2)
    keep = (
        (corners[..., 0].min(1) <= poly[:, 0].max())
        & (corners[..., 0].max(1) >= poly[:, 0].min())
        & (corners[..., 1].min(1) <= poly[:, 1].max())
        & (corners[..., 1].max(1) >= poly[:, 1].min())
    )
    for i in range(len(poly)):
        edge = poly[(i + 1) % len(poly)] - poly[i]
        normal = np.array([-edge[1], edge[0]])
        p = poly @ normal
        c = corners @ normal
        keep &= (c.min(1) <= p.max()) & (c.max(1) >= p.min())
    return [(int(x), int(y)) for x, y in zip(xs[keep], ys[keep], strict=True)]
