"""Pair a SAR tile with its optical view: fit points, mosaic, affine or mesh, warp, checks.

The build and `reconstruct.reconstruct_optical` go through the same `render_optical` with the
fit points and the model recorded in meta.json, so a reconstruction is pixel-identical to
what the build made.

The model: one affine when it follows the tie-point geolocation to `max_affine_residual_px`,
else a mesh (piecewise affine, `mesh.py`) on the coarsest grid of `MESH_GRIDS` that does
(relief bends the mapping). The choice is measured in Web-Mercator global pixels at the zoom,
so a fetching build and a metadata-only one (no mosaic) choose alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from sarlo_dask.driver.outcomes import METADATA_ONLY
from sarlo_dask.geometry.geolocation import metres_per_degree
from sarlo_dask.geometry.gpu import to_device, to_host
from sarlo_dask.geometry.tiles import Window, tile_corners, tile_llh
from sarlo_dask.optical.mesh import (
    MESH_GRIDS,
    Mesh,
    grid_points,
    mesh_check_points,
    mesh_from_points,
    mesh_outline,
    mesh_residual_sar_px,
)
from sarlo_dask.optical.mosaic import Mosaic, build_mosaic, write_geotiff, xyz_tiles
from sarlo_dask.optical.source import OpticalSource
from sarlo_dask.optical.tilemath import global_pixel, ground_resolution
from sarlo_dask.optical.warp import apply_affine, fit_affine, residual_sar_px, warp_bilinear


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
    max_affine_residual_px: float = 0.5
    """one affine when its residual is at most this, else the coarsest mesh that reaches it"""
    max_mesh_grid: int = 33
    """finest mesh tried (one of MESH_GRIDS); 0: never a mesh, one affine as before"""


def fit_points(w: Window, ds: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(tile pixel (azimuth, range), (lat, lon)) of the fit points, geolocated by tie points."""
    sar = tile_corners(w.size) if n < 2 else grid_points(w.size, n)
    return sar, _latlon(w, ds, sar)


def _latlon(w: Window, ds: Any, sar: np.ndarray) -> np.ndarray:
    """(lat, lon) of tile pixels `sar`, bilinear in the tie points."""
    return tile_llh(ds.lat, ds.lon, ds.hae, sar[:, 0] + w.a0, sar[:, 1] + w.r0)[:, :2]


def _global(latlon: np.ndarray, zoom: int) -> np.ndarray:
    return np.column_stack(global_pixel(latlon[:, 1], latlon[:, 0], zoom))


@dataclass(frozen=True)
class WarpModel:
    """A tile's SAR -> optical model: affine (least squares through the fit points) or mesh
    (grid x grid control points), with the points it is made from and where it is checked."""

    model: str
    grid: int | None
    sar: np.ndarray
    latlon: np.ndarray
    check_sar: np.ndarray
    check_latlon: np.ndarray
    residual_px: float
    affine_residual_px: float

    def record(self) -> dict[str, Any]:
        """meta.json's `optical.warp` (residuals in Web-Mercator global pixels at the zoom)."""
        return {
            "model": self.model,
            "grid": self.grid,
            "residual_px": self.residual_px,
            "affine_residual_px": self.affine_residual_px,
        }


def model_residual(mapping: np.ndarray | Mesh, sar: np.ndarray, optical: np.ndarray) -> float:
    """Largest distance in SAR pixels between `mapping` and the true one (`sar` -> `optical`)."""
    if isinstance(mapping, Mesh):
        return mesh_residual_sar_px(mapping, sar, optical)
    return residual_sar_px(mapping, sar, optical)


def choose_warp(w: Window, ds: Any, cfg: PairConfig) -> WarpModel:
    """The tile's model: one affine if its residual against the tie-point geolocation is at
    most `max_affine_residual_px`, else the coarsest mesh of MESH_GRIDS (up to
    `max_mesh_grid`) that is, else the best of those tried (the status judges its residual).

    Measured in Web-Mercator global pixels at the zoom (no mosaic needed: metadata mode
    chooses as the build does); residuals are in SAR pixels, so the zoom hardly matters.
    """
    sar, latlon = fit_points(w, ds, cfg.fit_grid)
    check_sar, check_ll = fit_points(w, ds, cfg.residual_grid)
    a = fit_affine(sar, _global(latlon, cfg.zoom))
    r_affine = residual_sar_px(a, check_sar, _global(check_ll, cfg.zoom))
    model = WarpModel("affine", None, sar, latlon, check_sar, check_ll, r_affine, r_affine)
    if r_affine <= cfg.max_affine_residual_px:
        return model
    for n in (g for g in MESH_GRIDS if g <= cfg.max_mesh_grid):
        sar, latlon = fit_points(w, ds, n)
        check_sar = mesh_check_points(w.size, n, cfg.residual_grid)
        check_ll = _latlon(w, ds, check_sar)
        mesh = mesh_from_points(sar, _global(latlon, cfg.zoom), w.size)
        r = mesh_residual_sar_px(mesh, check_sar, _global(check_ll, cfg.zoom))
        best = WarpModel("mesh", n, sar, latlon, check_sar, check_ll, r, r_affine)
        if r < model.residual_px:  # the finest mesh tried never loses to the affine
            model = best
        if r <= cfg.max_affine_residual_px:
            break
    return model


def residual_status(model: WarpModel, residual: float, cfg: PairConfig) -> str | None:
    """Why the model is not good enough (a failed status), or None: the same rule for the
    affine and for a mesh (the best one found: one that missed max_affine_residual_px at the
    finest grid is still shipped when within max_residual_px, as an affine would be)."""
    if residual > cfg.max_residual_px:
        return f"failed: {model.model} residual {residual:.2f} px > {cfg.max_residual_px} px"
    return None


def footprint_bbox(latlon: np.ndarray, zoom: int) -> tuple[float, float, float, float]:
    """(west, south, east, north) of the points, padded by two optical pixels for bilinear."""
    lat, lon = latlon[:, 0], latlon[:, 1]
    pad_m = 2 * ground_resolution(float(lat.mean()), zoom)
    north, east = metres_per_degree(lat.mean())
    dlat, dlon = pad_m / north, pad_m / east
    return (
        float(lon.min() - dlon),
        float(lat.min() - dlat),
        float(lon.max() + dlon),
        float(lat.max() + dlat),
    )


def optical_footprint(
    sar: np.ndarray, latlon: np.ndarray, zoom: int, size: int, mesh: int = 0
) -> tuple[tuple[float, float, float, float], np.ndarray]:
    """(the mosaic's bbox, the tile's outline in global pixels at `zoom`): the outline one
    SAR pixel wider, so bilinear neighbours are in; of the mesh on the points when `mesh`."""
    gxy = _global(latlon, zoom)
    if mesh:
        return footprint_bbox(latlon, zoom), mesh_outline(mesh_from_points(sar, gxy, size))
    outline = np.array([[-1, -1], [-1, size], [size, size], [size, -1]], dtype="float64")
    return footprint_bbox(latlon, zoom), apply_affine(fit_affine(sar, gxy), outline)


def render_optical(
    sar: np.ndarray,
    latlon: np.ndarray,
    source: OpticalSource,
    zoom: int,
    size: int,
    device: str = "cpu",
    mesh: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | Mesh, Mosaic]:
    """(image, valid, mapping, mosaic): the optical view warped into the size x size SAR grid.

    `mesh` 0: the affine fitted to the points `sar`; n: the mesh whose control points they
    are (an n x n grid, `mesh.grid_points`).

    XYZ tiles are fetched only where the tile's outline (one SAR pixel wider, so bilinear
    neighbours are in) falls: a footprint at an angle to north leaves the bbox's corners out.
    The mosaic's image is this thread's scratch buffer: use it before the thread's next call.
    `device` 'cuda' warps on this worker's GPU (the result comes back to host memory).
    """
    bbox, footprint = optical_footprint(sar, latlon, zoom, size, mesh)
    mosaic = build_mosaic(source, *bbox, footprint=footprint, scratch=True)
    uv = np.column_stack(mosaic.project(latlon[:, 1], latlon[:, 0]))
    mapping = mesh_from_points(sar, uv, size) if mesh else fit_affine(sar, uv)
    image, valid = warp_bilinear(
        to_device(mosaic.image) if device == "cuda" else mosaic.image, mapping, size
    )
    return to_host(image), to_host(valid), mapping, mosaic


def xyz_tiles_needed(w: Window, ds: Any, cfg: PairConfig) -> list[tuple[int, int, int]]:
    """The (z, x, y) XYZ tiles `pair_tile` fetches for window `w` (what a prefetch plans):
    `render_optical`'s footprint of the same model and points."""
    model = choose_warp(w, ds, cfg)
    bbox, footprint = optical_footprint(model.sar, model.latlon, cfg.zoom, w.size, model.grid or 0)
    return xyz_tiles(cfg.zoom, *bbox, footprint)[1]


def pair_tile(
    w: Window, ds: Any, source: OpticalSource, cfg: PairConfig, mosaic_path: str | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """The warped optical tile and the meta.json `optical` fields, with a status and reason.

    `mosaic_path`: also write the mosaic it was warped from there, as a GeoTIFF.
    """
    model = choose_warp(w, ds, cfg)
    image, valid, mapping, mosaic = render_optical(
        model.sar, model.latlon, source, cfg.zoom, w.size, cfg.device, model.grid or 0
    )
    if mosaic_path is not None:
        write_geotiff(mosaic, mosaic_path)
    check_ll = model.check_latlon
    residual = model_residual(
        mapping, model.check_sar, np.column_stack(mosaic.project(check_ll[:, 1], check_ll[:, 0]))
    )
    if isinstance(mapping, Mesh):  # the affine meta.json records: through the fit points
        sar, latlon = fit_points(w, ds, cfg.fit_grid)
        a = fit_affine(sar, np.column_stack(mosaic.project(latlon[:, 1], latlon[:, 0])))
    else:
        a = mapping
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
    elif (why := residual_status(model, residual, cfg)) is not None:
        status = why
    meta = {
        "corners_wgs84": fit_points(w, ds, 0)[1].tolist(),
        "source": source.describe(),
        "zoom": cfg.zoom if mosaic.zoom is not None else None,
        "fit_points": np.column_stack([model.sar, model.latlon]).tolist(),
        "warp": model.record(),
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
    SARLO-80 v2 ships its optical views): the source, zoom, model and fit points that `sarlo
    optical reconstruct` warps from (the model chosen as the build chooses it); nothing is
    fetched at build time. A model that is not good enough is a failed status, as in a build."""
    model = choose_warp(w, ds, cfg)
    return {
        "corners_wgs84": fit_points(w, ds, 0)[1].tolist(),
        "source": source.describe(),
        "zoom": cfg.zoom if source.zoom is not None else None,
        "fit_points": np.column_stack([model.sar, model.latlon]).tolist(),
        "warp": model.record(),
        "status": residual_status(model, model.residual_px, cfg) or METADATA_ONLY,
        "retry": False,
    }
