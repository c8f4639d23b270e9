"""Pair a SAR tile with its optical view: fit points, mosaic, affine, warp, checks.

The build and `reconstruct.reconstruct_optical` go through the same `render_optical` with the
fit points recorded in meta.json, so a reconstruction is pixel-identical to what the build made.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from sarlo_dask.gpu import to_device, to_host
from sarlo_dask.optical.mosaic import Mosaic, build_mosaic, write_geotiff, xyz_tiles
from sarlo_dask.optical.sources import OpticalSource
from sarlo_dask.optical.tilemath import global_pixel, ground_resolution
from sarlo_dask.optical.warp import apply_affine, fit_affine, residual_sar_px, warp_bilinear
from sarlo_dask.outcomes import METADATA_ONLY
from sarlo_dask.tiles import Window, tile_corners, tile_llh


@dataclass(frozen=True)
class PairConfig:
    zoom: int = 19
    fit_grid: int = 0
    """0: the tile's four corners (the paper's way); n >= 2: an n x n grid of points"""
    min_valid_fraction: float = 0.95
    max_residual_px: float = 1.0
    residual_grid: int = 17
    device: str = "cpu"
    """where the warp runs: cpu or cuda"""


def _grid(size: int, n: int) -> np.ndarray:
    s = np.linspace(0, size - 1, n)
    a, r = np.meshgrid(s, s, indexing="ij")
    return np.column_stack([a.ravel(), r.ravel()])


def fit_points(w: Window, ds: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(tile pixel (azimuth, range), (lat, lon)) of the fit points, geolocated by tie points."""
    sar = tile_corners(w.size) if n < 2 else _grid(w.size, n)
    llh = tile_llh(ds.lat, ds.lon, ds.hae, sar[:, 0] + w.a0, sar[:, 1] + w.r0)
    return sar, llh[:, :2]


def footprint_bbox(latlon: np.ndarray, zoom: int) -> tuple[float, float, float, float]:
    """(west, south, east, north) of the points, padded by two optical pixels for bilinear."""
    lat, lon = latlon[:, 0], latlon[:, 1]
    pad_m = 2 * ground_resolution(float(lat.mean()), zoom)
    dlat = pad_m / 111_320.0
    dlon = pad_m / (111_320.0 * np.cos(np.radians(lat.mean())))
    return (
        float(lon.min() - dlon),
        float(lat.min() - dlat),
        float(lon.max() + dlon),
        float(lat.max() + dlat),
    )


def optical_footprint(
    sar: np.ndarray, latlon: np.ndarray, zoom: int, size: int
) -> tuple[tuple[float, float, float, float], np.ndarray]:
    """(the mosaic's bbox, the tile's outline in global pixels at `zoom`): the outline one
    SAR pixel wider, so bilinear neighbours are in."""
    gx, gy = global_pixel(latlon[:, 1], latlon[:, 0], zoom)
    outline = np.array([[-1, -1], [-1, size], [size, size], [size, -1]], dtype="float64")
    footprint = apply_affine(fit_affine(sar, np.column_stack([gx, gy])), outline)
    return footprint_bbox(latlon, zoom), footprint


def render_optical(
    sar: np.ndarray,
    latlon: np.ndarray,
    source: OpticalSource,
    zoom: int,
    size: int,
    device: str = "cpu",
) -> tuple[np.ndarray, np.ndarray, np.ndarray, Mosaic]:
    """(image, valid, A, mosaic): the optical view warped into the size x size SAR grid.

    XYZ tiles are fetched only where the tile's outline (one SAR pixel wider, so bilinear
    neighbours are in) falls: a footprint at an angle to north leaves the bbox's corners out.
    The mosaic's image is this thread's scratch buffer: use it before the thread's next call.
    `device` 'cuda' warps on this worker's GPU (the result comes back to host memory).
    """
    bbox, footprint = optical_footprint(sar, latlon, zoom, size)
    mosaic = build_mosaic(source, *bbox, footprint=footprint, scratch=True)
    u, v = mosaic.project(latlon[:, 1], latlon[:, 0])
    a = fit_affine(sar, np.column_stack([u, v]))
    image, valid = warp_bilinear(
        to_device(mosaic.image) if device == "cuda" else mosaic.image, a, size
    )
    return to_host(image), to_host(valid), a, mosaic


def xyz_tiles_needed(w: Window, ds: Any, cfg: PairConfig) -> list[tuple[int, int, int]]:
    """The (z, x, y) XYZ tiles `pair_tile` fetches for window `w` (what a prefetch plans):
    `render_optical`'s footprint of the same fit points."""
    sar, latlon = fit_points(w, ds, cfg.fit_grid)
    bbox, footprint = optical_footprint(sar, latlon, cfg.zoom, w.size)
    return xyz_tiles(cfg.zoom, *bbox, footprint)[1]


def pair_tile(
    w: Window, ds: Any, source: OpticalSource, cfg: PairConfig, mosaic_path: str | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """The warped optical tile and the meta.json `optical` fields, with a status and reason.

    `mosaic_path`: also write the mosaic it was warped from there, as a GeoTIFF.
    """
    sar, latlon = fit_points(w, ds, cfg.fit_grid)
    image, valid, a, mosaic = render_optical(sar, latlon, source, cfg.zoom, w.size, cfg.device)
    if mosaic_path is not None:
        write_geotiff(mosaic, mosaic_path)
    check_sar, check_ll = fit_points(w, ds, cfg.residual_grid)
    cu, cv = mosaic.project(check_ll[:, 1], check_ll[:, 0])
    residual = residual_sar_px(a, check_sar, np.column_stack([cu, cv]))
    frac = float(valid.mean())
    status, retry = "ok", False
    if mosaic.failures:
        status = (
            f"failed: {len(mosaic.failures)} of {mosaic.tiles} optical tiles unavailable "
            f"({mosaic.failures[0]})"
        )
        retry = True
    elif frac < cfg.min_valid_fraction:
        status = (
            f"failed: valid optical fraction {frac:.3f} < {cfg.min_valid_fraction} "
            f"({mosaic.missing} of {mosaic.tiles} tiles empty)"
        )
    elif residual > cfg.max_residual_px:
        status = f"failed: affine residual {residual:.2f} px > {cfg.max_residual_px} px"
    corners_ll = latlon if cfg.fit_grid < 2 else fit_points(w, ds, 0)[1]
    meta = {
        "corners_wgs84": corners_ll.tolist(),
        "source": source.describe(),
        "zoom": cfg.zoom if mosaic.zoom is not None else None,
        "fit_points": np.column_stack([sar, latlon]).tolist(),
        "affine_sar_to_optical": a.tolist(),
        "residual_px": residual,
        "valid_fraction": frac,
        "tiles": mosaic.tiles,
        "tiles_empty": mosaic.missing,
        "tiles_failed": len(mosaic.failures),
        "status": status,
        "retry": retry,
    }
    return image, meta


def pair_metadata(w: Window, ds: Any, source: OpticalSource, cfg: PairConfig) -> dict[str, Any]:
    """meta.json's `optical` fields without the image (tiles.optical_mode metadata, as
    SARLO-80 v2 ships its optical views): the source, zoom and fit points that `sarlo optical
    reconstruct` warps from; nothing is fetched at build time."""
    sar, latlon = fit_points(w, ds, cfg.fit_grid)
    corners_ll = latlon if cfg.fit_grid < 2 else fit_points(w, ds, 0)[1]
    return {
        "corners_wgs84": corners_ll.tolist(),
        "source": source.describe(),
        "zoom": cfg.zoom if getattr(source, "zoom", None) is not None else None,
        "fit_points": np.column_stack([sar, latlon]).tolist(),
        "status": METADATA_ONLY,
        "retry": False,
    }
