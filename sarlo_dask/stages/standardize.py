"""The scene stage as a lazy graph: SICD scene -> 0.8 m slant-range slc + tie-point geolocation.

Azimuth first (a block of SICD rows, contiguous in the file, holds whole azimuth lines), a
rechunk, then range. Each pass deskews its own axis before cropping, so a skewed spectrum is
never cut; the written DeltaKCOAPoly is what is left after both deskews (zero for a curl-free
skew field).
"""

from __future__ import annotations

import json
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from sarlo_dask._version import __version__
from sarlo_dask.config import StandardizeConfig, on_device
from sarlo_dask.errors import SceneError
from sarlo_dask.geometry.checks import check_sicd
from sarlo_dask.geometry.geolocation import (
    ConstantHeight,
    HeightSurface,
    project_grid,
    tie_point_axis,
    tie_point_step,
)
from sarlo_dask.geometry.gpu import device_meta, gpu_count, to_device, to_host
from sarlo_dask.geometry.resample import (
    AxisPlan,
    array_module,
    off_axis_poly,
    plan_axis,
    resample_axis,
    skew_phase,
    working_set,
)
from sarlo_dask.geometry.resampled import resampled_sicd
from sarlo_dask.geometry.sicd import sicd_from_xml

GEOLOCATION_BLOCK = 50_000  # tie points per projection task
TASK_OVERHEAD = 8 * 2**20
"""what a resampling task holds besides its arrays (Python objects, the FFT's scratch lines)"""


def _poly(direction: Any) -> np.ndarray:
    p = direction.DeltaKCOAPoly
    return np.zeros((1, 1)) if p is None else np.atleast_2d(p.get_array(dtype="float64"))


def _resample_lines(
    block: Any,
    other_positions: np.ndarray,
    plan: AxisPlan,
    poly: np.ndarray,
    sgn: int,
    sicd_axis: int,
) -> Any:
    """Resample a block along its last axis, SICD direction `sicd_axis` (0 range, 1 azimuth).

    The block's first axis is the other direction, at `other_positions` (m), which locate
    the deskew."""
    phase = skew_phase(
        poly, sicd_axis, plan.positions_in(), other_positions, sgn, array_module(block)
    )
    if phase is not None and sicd_axis == 0:
        phase = phase.T  # skew_phase is laid out (range, azimuth)
    return resample_axis(block, plan, axis=1, phase=phase)


def _pass(
    arr: da.Array,
    plan: AxisPlan,
    poly: np.ndarray,
    sgn: int,
    sicd_axis: int,
    other_positions: np.ndarray,
) -> da.Array:
    """One resampling pass along the last axis of `arr`, a task per block of lines."""
    positions = da.from_array(other_positions, chunks=(arr.chunks[0],))
    return da.blockwise(
        _resample_lines,
        "ij",
        arr,
        "ij",
        positions,
        "i",
        plan=plan,
        poly=poly,
        sgn=sgn,
        sicd_axis=sicd_axis,
        adjust_chunks={"j": plan.n_out},
        dtype=np.complex64,
        meta=arr._meta,
    )


def plan_scene(sicd: Any, cfg: StandardizeConfig, where: str) -> tuple[AxisPlan, AxisPlan]:
    """Check the scene and plan both axes (range, azimuth), or raise a SceneError."""
    by, finest, coarsest = cfg.native_selection()
    check_sicd(sicd, where, finest, coarsest, cfg.polarizations, by)
    img, grid = sicd.ImageData, sicd.Grid
    plan_rg = plan_axis(
        int(img.NumRows), grid.Row.SS, int(img.FirstRow), int(img.SCPPixel.Row), cfg.spacing
    )
    plan_az = plan_axis(
        int(img.NumCols), grid.Col.SS, int(img.FirstCol), int(img.SCPPixel.Col), cfg.spacing
    )
    if min(plan_rg.n_out, plan_az.n_out) < cfg.min_size:
        raise SceneError(
            where,
            f"scene smaller than one tile: {plan_az.n_out} x {plan_rg.n_out} "
            f"(azimuth x range) pixels at {cfg.spacing} m, tile "
            f"{cfg.min_size}",
            stage="standardize",
        )
    return plan_rg, plan_az


def task_peaks(sicd: Any, cfg: StandardizeConfig) -> dict[str, tuple[int, int, int, int]]:
    """What each resampling pass's task holds at its peak, by the setting that sizes its
    block: {"chunk_range": (bytes, lines, n_in, n_out)} for the azimuth pass (chunk_range
    range lines of every azimuth sample), {"chunk_azimuth": ...} for the range pass
    (chunk_azimuth lines of the resampled azimuth, every range sample): the input block,
    the FFT working set and the resampled output (resample.working_set)."""
    plan_rg, plan_az = plan_scene(sicd, cfg, "scene")
    skew = cfg.deskew
    p_row, p_col = _poly(sicd.Grid.Row), _poly(sicd.Grid.Col)
    s_row, s_col = int(sicd.Grid.Row.Sgn), int(sicd.Grid.Col.Sgn)
    p_row = off_axis_poly(p_col, p_row, 1, s_col, s_row)  # what the range pass deskews
    az = (min(cfg.chunk_range, plan_rg.n_in), plan_az.n_in, plan_az.n_out)
    rg = (min(cfg.chunk_azimuth, plan_az.n_out), plan_rg.n_in, plan_rg.n_out)
    return {
        "chunk_range": (working_set(*az, skew and bool(np.any(p_col))) + TASK_OVERHEAD, *az),
        "chunk_azimuth": (working_set(*rg, skew and bool(np.any(p_row))) + TASK_OVERHEAD, *rg),
    }


def resample_slc(
    slc: da.Array, sicd: Any, plan_rg: AxisPlan, plan_az: AxisPlan, cfg: StandardizeConfig
) -> tuple[da.Array, np.ndarray, np.ndarray]:
    """The 2-D band-limited resampling graph; returns (slc_out, row_poly, col_poly) written.

    `slc` is (azimuth, range) in blocks of range lines holding every azimuth sample (as
    `open_sicd` reads them: contiguous in the file). The azimuth pass runs on those blocks,
    a rechunk gives blocks of azimuth lines holding every range sample, the range pass runs
    on them. slc_out is (azimuth, range) in blocks of `chunk_azimuth` azimuth lines; the
    store rechunks to its own chunks."""
    grid = sicd.Grid
    p_row, p_col = _poly(grid.Row), _poly(grid.Col)
    s_row, s_col = int(grid.Row.Sgn), int(grid.Col.Sgn)
    if not cfg.deskew:  # for comparison only: a skewed spectrum gets cut by the crop
        p_row, p_col = np.zeros((1, 1)), np.zeros((1, 1))

    lines = slc.T  # (range, azimuth): the file's own blocks, no copy
    step1 = _pass(lines, plan_az, p_col, s_col, 1, plan_rg.positions_in())
    p_row = off_axis_poly(p_col, p_row, 1, s_col, s_row)
    p_col = np.zeros((1, 1))
    # the rechunk copies anyway: through a lazy transpose its copies come out azimuth-major,
    # so the range FFTs run along contiguous memory (about twice as fast as strided)
    step1 = step1.T.rechunk({0: cfg.chunk_azimuth, 1: -1})
    step2 = _pass(step1, plan_rg, p_row, s_row, 0, plan_az.positions_out())
    p_col = off_axis_poly(p_row, p_col, 0, s_row, s_col)
    p_row = np.zeros((1, 1))
    if not cfg.deskew:  # nothing was deskewed: the input's skew is still in the data
        p_row, p_col = _poly(grid.Row), _poly(grid.Col)
    return step2, p_row, p_col


def geolocation_graph(
    sicd_xml: str, step: int, n_rg: int, n_az: int, surface: HeightSurface
) -> da.Array:
    """(4, tp_azimuth, tp_range) lat, lon, hae and terrain flags of the SICD `sicd_xml`
    (n_rg rows, n_az columns) on `surface`, projected in tasks of ~50,000 points."""
    import dask

    az, rg = tie_point_axis(n_az, step), tie_point_axis(n_rg, step)
    rows_per_task = max(1, GEOLOCATION_BLOCK // len(rg))
    shared = dask.delayed(surface, pure=True)  # once in the graph (a DEM's grid is megabytes)
    parts = []
    for i in range(0, len(az), rows_per_task):
        sub = az[i : i + rows_per_task]
        task = dask.delayed(project_grid, pure=True)(sicd_xml, sub, rg, shared)
        parts.append(da.from_delayed(task, shape=(4, len(sub), len(rg)), dtype="float64"))
    return da.concatenate(parts, axis=1)


def terrain_variables(
    xml_out: str, step: int, n_rg: int, n_az: int, llh: da.Array, dem: Any, cfg: StandardizeConfig
) -> dict[str, Any]:
    """The scene store's terrain tie-point variables: `terrain_flags` (LAYOVER | SHADOW bits)
    and, when the DEM only checks (`dem_use: check`), the DEM's own geolocation (dem_lat,
    dem_lon, dem_hae) and how far off the constant height puts each tie point
    (`terrain_shift_px`)."""
    import dask

    from sarlo_dask.geometry.terrain import DemSurface
    from sarlo_dask.geometry.terrain_tiles import terrain_shift_px

    tp = ("tp_azimuth", "tp_range")
    if cfg.dem_use == "geolocation":
        return {"terrain_flags": (tp, llh[3].astype("uint8"))}
    on_dem = geolocation_graph(xml_out, step, n_rg, n_az, DemSurface(dem))
    az, rg = tie_point_axis(n_az, step), tie_point_axis(n_rg, step)
    shift = dask.delayed(terrain_shift_px, pure=True)(llh[0], llh[1], on_dem[0], on_dem[1], az, rg)
    return {
        "terrain_flags": (tp, on_dem[3].astype("uint8")),
        "dem_lat": (tp, on_dem[0]),
        "dem_lon": (tp, on_dem[1]),
        "dem_hae": (tp, on_dem[2]),
        "terrain_shift_px": (
            tp,
            da.from_delayed(shift, shape=(len(az), len(rg)), dtype="float64").astype("float32"),
        ),
    }


def standardize_scene(
    scene: xr.Dataset, cfg: StandardizeConfig | None = None, dem: Any = None
) -> xr.Dataset:
    """The lazy standardized scene: `slc` (azimuth, range) at cfg.spacing, lat/lon/hae tie points.

    `scene` is what sicd.open_sicd returns; `dem` the `dem.DemGrid` under it when cfg.dem
    names one (the scene stage reads it: math opens no file). attrs: `sicd_xml` (the
    resampled grid's SICD), `source_sicd_xml`, `scene_id`, `pass_id`, the effective spacings,
    the geolocation bound and its measured estimate, the height surface, and provenance.
    """
    cfg = on_device(cfg or StandardizeConfig(), gpu_count() > 0)
    where = scene.attrs.get("source_url", scene.attrs.get("scene_id", "scene"))
    sicd = sicd_from_xml(scene.attrs["sicd_xml"])
    plan_rg, plan_az = plan_scene(sicd, cfg, where)
    data = scene.slc.data
    if cfg.device == "cuda":  # the same graph on GPU blocks; the store gets host blocks
        data = da.map_blocks(to_device, data, dtype=np.complex64, meta=device_meta(np.complex64))
    slc, p_row, p_col = resample_slc(data, sicd, plan_rg, plan_az, cfg)
    if cfg.device == "cuda":
        slc = da.map_blocks(to_host, slc, dtype=np.complex64, meta=np.empty((0, 0), np.complex64))
    slc = slc.rechunk((cfg.store_chunk, cfg.store_chunk))  # the store's chunks
    # one text for everything that projects and for the store: the same SICD by construction
    xml_out = resampled_sicd(sicd, plan_rg, plan_az, p_row, p_col).to_xml_string(tag="SICD")
    if (dem is None) != (cfg.dem is None):
        raise ValueError("standardize_scene: give the DEM's grid exactly when cfg.dem names one")
    surface: HeightSurface = ConstantHeight(cfg.hae)
    search, bound = surface, cfg.geolocation_bound_m
    if dem is not None and cfg.dem_use == "geolocation":
        from sarlo_dask.geometry.terrain import DemSurface

        surface, search, bound = DemSurface(dem), DemSurface(dem, False), cfg.dem_bound_m
    choice = tie_point_step(xml_out, bound, cfg.tie_point_max_step, surface=search)
    n_rg, n_az = plan_rg.n_out, plan_az.n_out
    llh = geolocation_graph(xml_out, choice.step, n_rg, n_az, surface)
    tp = ("tp_azimuth", "tp_range")
    terrain = (
        {} if dem is None else terrain_variables(xml_out, choice.step, n_rg, n_az, llh, dem, cfg)
    )
    attrs = {
        "scene_id": scene.attrs["scene_id"],
        "pass_id": scene.attrs["pass_id"],
        "source_url": scene.attrs.get("source_url", ""),
        "sicd_xml": xml_out,
        "source_sicd_xml": scene.attrs["sicd_xml"],
        "spacing_eff_az": plan_az.ss_out,
        "spacing_eff_rg": plan_rg.ss_out,
        "scp_azimuth": plan_az.scp_out,
        "scp_range": plan_rg.scp_out,
        "tie_point_step": choice.step,
        "geolocation_error_bound_m": choice.bound_m,
        "geolocation_error_estimate_m": choice.estimate_m,
        "geolocation_height": surface.describe(),
        "dem": "" if dem is None else dem.name,
        "dem_use": "" if dem is None else cfg.dem_use,
        "scene_config": cfg.digest(),  # what its tiles record: a store made otherwise is stale
        "provenance": json.dumps(
            {
                "package": "sarlo-dask",
                "version": __version__,
                "stage": "standardize",
                "parameters": cfg.provenance(),
            },
            sort_keys=True,
        ),
    }
    return xr.Dataset(
        {
            "slc": (("azimuth", "range"), slc),
            "lat": (tp, llh[0]),
            "lon": (tp, llh[1]),
            "hae": (tp, llh[2]),
            **terrain,
        },
        coords={
            "azimuth": np.arange(n_az),
            "range": np.arange(n_rg),
            "tp_azimuth": tie_point_axis(n_az, choice.step),
            "tp_range": tie_point_axis(n_rg, choice.step),
        },
        attrs=attrs,
    )


def open_scene_store(
    url: str,
    storage_options: dict[str, Any] | None = None,
    chunks: Any = "auto",
    indexes: bool = True,
) -> xr.Dataset:
    """A standardized scene store, lazily (the SICD XML in attrs places every pixel).

    `chunks=None` opens it without Dask (inside a task: a window reads only its chunks).
    `indexes=False` skips reading the coordinates into indexes (most of the opening time;
    positional access, as a tile task's, needs none).
    """
    kwargs: dict[str, Any] = {} if chunks == "auto" else {"chunks": chunks}
    if not indexes:
        kwargs["create_default_indexes"] = False
    return xr.open_zarr(url, storage_options=storage_options or None, zarr_format=3, **kwargs)
