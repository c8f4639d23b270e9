"""The tile stage's unit of work: one window of a scene store -> its members in {work}/tiles.

Members of tile KEY in {work}/tiles/{scene_id}/: KEY.sar.npy (complex64, little-endian),
KEY.sicd.xml (the chip's SICD, sarlo_dask.geometry.chip), KEY.sar.png (or .jpg), KEY.optic.png (when
the optical check passed) and KEY.meta.json, written last: a tile is complete when its
meta.json exists and asks for no retry.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Sequence
from typing import Any

import numpy as np

from sarlo_dask._version import __version__
from sarlo_dask.config import TileConfig, on_device
from sarlo_dask.driver.integrity import sha256
from sarlo_dask.driver.outcomes import NO_OPTICAL_SOURCE, window_error
from sarlo_dask.driver.worker_state import worker_state
from sarlo_dask.errors import redact
from sarlo_dask.geometry.acquisition import SCHEMA_VERSION, acquisition
from sarlo_dask.geometry.chip import chip_sicd_xml
from sarlo_dask.geometry.gpu import gpu_count
from sarlo_dask.geometry.landcover import HeldLandCover, tile_landcover
from sarlo_dask.geometry.quality import phash, saturated_fraction, tile_quality
from sarlo_dask.geometry.sicd import sicd_from_xml
from sarlo_dask.geometry.terrain_tiles import tile_terrain
from sarlo_dask.geometry.tiles import (
    PreviewSpec,
    Window,
    db_preview,
    encode_image,
    polygon_mask,
    refined_lee,
    sigma0,
    tie_point_fields,
    tile_geometry,
    tile_llh,
    valid_fraction,
)
from sarlo_dask.optical.mosaic import DECODED
from sarlo_dask.optical.pair import PairConfig, pair_metadata, pair_tile
from sarlo_dask.optical.sources import OpticalSource, source_from_spec
from sarlo_dask.storage_config import options_of
from sarlo_dask.store import Store, filesystem, is_local, join, json_bytes


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array.astype("<c8")), allow_pickle=False)
    return buf.getvalue()


def tile_lineage(meta: dict[str, Any]) -> dict[str, Any]:
    """The settings a tile was made under (its scene's and its own), from its meta.json."""
    prov = meta.get("provenance", {})
    return {"scene_config": prov.get("scene_config"), "tile_config": prov.get("tile_config")}


def tile_summary(meta: dict[str, Any], digest: str) -> dict[str, Any]:
    """What the pipeline records of a kept tile, from its meta.json (fresh or from a past run)
    and the sha256 of its bytes (what the tiles marker records)."""
    optical = meta.get("optical", {})
    return {
        "key": meta["key"],
        "digest": digest,
        "lineage": tile_lineage(meta),
        "valid_fraction": meta["valid_fraction"],
        "status": "kept",
        "optical": optical.get("status", NO_OPTICAL_SOURCE),
        "retry": bool(optical.get("retry", False)),
    }


def stored_summary(work: Store, w: Window) -> dict[str, Any] | None:
    """The summary of a tile an earlier run wrote, with the sha256 of its meta.json (the
    caller checks it against the tiles marker's); None: no meta.json. It must be made (again)
    when it asks for an optical retry (`retry`: also set for a meta.json that is not JSON).
    Its `lineage` says what it was made under: the caller compares it with the settings."""
    fs, path = work.filesystem(work.tile_member(w.scene_id, w.key, "meta.json"))
    try:
        data = fs.cat_file(path)
    except FileNotFoundError:
        return None
    try:
        return tile_summary(json.loads(data), sha256(data))
    except (ValueError, KeyError):
        return {"key": w.key, "digest": sha256(data), "retry": True, "lineage": None}


def _scene_sicds(sicd_xml: str, source_xml: str) -> tuple[Any, Any]:
    """The scene's two SICDs, parsed once per worker (tiles of a scene share them; read only)."""
    make = lambda: (sicd_from_xml(sicd_xml), sicd_from_xml(source_xml))  # noqa: E731
    return worker_state().memo("scene-sicds", (sicd_xml, source_xml), make, size=4)


def _open_store(url: str, so: dict[str, Any]) -> Any:
    """The scene store without Dask; a local one opened once per worker and version of its
    metadata (tiles of a scene share it: opening costs about a window's read)."""
    from sarlo_dask.stages.standardize import open_scene_store

    fs, path = filesystem(url, so)
    if not is_local(fs):
        return open_scene_store(url, so, chunks=None, indexes=False)
    stamp = os.stat(os.path.join(path, "zarr.json")).st_mtime_ns  # rewritten: opened again

    def make() -> Any:
        return open_scene_store(url, None, chunks=None, indexes=False)

    return worker_state().memo("scene-stores", (url, stamp), make, size=4)


def optical_source(cfg: TileConfig) -> OpticalSource:
    """The tile stage's optical source (`cfg.optical` must be set), with its cache and HTTP
    settings: what tile tasks and XYZ prefetch tasks fetch through."""
    assert cfg.optical is not None
    return source_from_spec(
        cfg.optical,
        cfg.zoom,
        cfg.tile_cache,
        timeout=cfg.http_timeout,
        retries=cfg.http_retries,
        backoff=cfg.http_backoff,
        max_workers=cfg.http_concurrency,
        rate=cfg.http_rate,
        cache_options=options_of(cfg, cfg.tile_cache, "tile_cache_options"),
    )


def landcover_of(w: Window, ds: Any, cfg: TileConfig) -> tuple[np.ndarray, dict[str, Any]]:
    """The tile's land-cover class map and meta.json's `landcover` (the raster opened once
    per worker and URL)."""
    assert cfg.landcover is not None
    url, so = cfg.landcover, options_of(cfg, cfg.landcover)
    make = lambda: HeldLandCover(url, so)  # noqa: E731
    held = worker_state().memo("landcover", url, make, size=2, close=True)
    az, rg = np.meshgrid(np.arange(w.size) + w.a0, np.arange(w.size) + w.r0, indexing="ij")
    ll = tie_point_fields((ds.lat, ds.lon), az.ravel(), rg.ravel())  # no height needed
    lat, lon = (ll[:, i].reshape(w.size, w.size) for i in (0, 1))
    return tile_landcover(held, lat, lon, url)


def pair_config(cfg: TileConfig) -> PairConfig:
    """The pairing settings of the tile stage's settings."""
    return PairConfig(
        cfg.zoom,
        cfg.fit_grid,
        cfg.min_optical_fraction,
        cfg.max_residual_px,
        device=cfg.device,
        max_affine_residual_px=cfg.max_affine_residual_px,
        max_mesh_grid=cfg.max_mesh_grid,
    )


def make_tile(
    work: Store, w: Window, cfg: TileConfig, scene_config: str | None = None
) -> dict[str, Any]:
    """Cut, check, preview and pair one tile; write its members; return a one-line summary.

    `scene_config`: the digest of the settings the scene was made under (its marker's; by
    default its store's), recorded with the tile's own so a resume can tell a stale tile."""
    cfg = on_device(cfg, gpu_count() > 0)
    ds = _open_store(work.scene_store(w.scene_id), work.options)
    sicd, src_sicd = _scene_sicds(ds.attrs["sicd_xml"], ds.attrs["source_sicd_xml"])
    ia, ir = w.slices()
    patch = np.asarray(ds.slc[ia, ir].values, dtype=np.complex64)
    poly = sicd.ImageData.ValidData
    mask = (
        None if poly is None else polygon_mask(poly.get_array(dtype="float64"), w.a0, w.r0, w.size)
    )
    amplitude = np.abs(patch)  # once: validity, preview and sigma0 all start from |z|
    frac = valid_fraction(amplitude, mask)
    summary: dict[str, Any] = {"key": w.key, "valid_fraction": frac}
    if frac < cfg.min_valid_fraction:
        summary["status"] = f"refused: valid SAR fraction {frac:.3f} < {cfg.min_valid_fraction}"
        return summary
    power = amplitude.astype("float64") ** 2  # once: quality, preview and sigma0
    ds = ds[[v for v in ds.data_vars if v != "slc"]].load()  # the tie-point variables
    geometry = tile_geometry(w, ds, sicd, src_sicd)
    terrain = tile_terrain(w, ds, sicd)
    if terrain is not None:
        geometry["incidence_angles"]["terrain_deg"] = terrain.pop("incidence_deg")
        geometry["incidence_angles"].pop("terrain_deg_reason")
        geometry["terrain"] = terrain
    meta: dict[str, Any] = {
        "key": w.key,
        "scene_id": w.scene_id,
        "pass_id": ds.attrs["pass_id"],
        "schema_version": SCHEMA_VERSION,
        "source_url": redact(ds.attrs.get("source_url", "")),
        "tile_index": [w.ia, w.ir],
        "valid_fraction": frac,
        "quality": tile_quality(power, mask, saturated_fraction(patch, mask, src_sicd)),
        **geometry,
        "acquisition": acquisition(sicd, src_sicd, geometry["incidence_angles"]["ellipsoid_deg"]),
        "preview": {
            "format": cfg.preview_format,
            "clip_percentiles": [cfg.preview_low_percentile, cfg.preview_high_percentile],
        },
        "provenance": {
            "package": "sarlo-dask",
            "version": __version__,
            "tile_config": cfg.digest(),
            "scene_config": scene_config or ds.attrs.get("scene_config"),
        },
    }
    spec = PreviewSpec(cfg.preview_low_percentile, cfg.preview_high_percentile)
    s0 = sigma0(power, sicd, w.a0, w.r0) if cfg.preview_scale != "amplitude" else None
    if s0 is not None:
        power = s0
    preview, clip_db = db_preview(power, spec)
    meta["quality"]["phash"] = phash(preview)  # of what a viewer sees: near duplicates
    meta["preview"]["scale"] = "sigma0 dB" if s0 is not None else "20 log10 |z|"
    meta["preview"]["clip_db"] = list(clip_db)
    if cfg.preview_scale == "sigma0" and s0 is None:
        meta["preview"]["note"] = "sigma0 asked for, but the SICD has no Radiometric block"
    if s0 is not None:
        ok = s0[s0 > 0]
        meta["sigma0_db"] = {
            "mean": float(10 * np.log10(ok.mean())),
            "median": float(10 * np.log10(np.median(ok))),
            "p01": clip_db[0] if spec.low_percentile == 1 else None,
            "p99": clip_db[1] if spec.high_percentile == 99 else None,
        }
    members = {
        f"{w.key}.sar.npy": npy_bytes(patch),
        f"{w.key}.sicd.xml": chip_sicd_xml(
            ds.attrs["sicd_xml"],
            meta["crop"],
            lambda rows, cols: tile_llh(ds.lat, ds.lon, ds.hae, cols, rows)[:, :2],
        ).encode(),
        f"{w.key}.sar.{cfg.preview_format}": encode_image(
            preview, cfg.preview_format, compress_level=cfg.png_compress_level, speckle=True
        ),
    }
    if cfg.speckle_filter:
        lee, lee_clip = db_preview(refined_lee(power), spec)
        members[f"{w.key}.sar_lee.{cfg.preview_format}"] = encode_image(
            lee, cfg.preview_format, compress_level=cfg.png_compress_level, speckle=True
        )
        meta["preview"]["refined_lee"] = {"window": 7, "looks": 1, "clip_db": list(lee_clip)}
    if cfg.optical:
        DECODED.resize(cfg.decoded_cache_mb)
        source, pair_cfg = optical_source(cfg), pair_config(cfg)
        shift, limit = (terrain or {}).get("shift_px"), cfg.max_terrain_shift_px
        off = shift is not None and limit is not None and shift > limit
        # rasterio writes local files: the mosaic is staged, then copied to {work}
        with tempfile.TemporaryDirectory() as tmp:
            mosaic_path = os.path.join(tmp, "mosaic.tif") if cfg.save_mosaic else None
            if cfg.optical_mode == "metadata" or off:  # nothing fetched
                optic, optical, mosaic_path = None, pair_metadata(w, ds, source, pair_cfg), None
            else:
                optic, optical = pair_tile(w, ds, source, pair_cfg, mosaic_path)
            if mosaic_path is not None:
                with open(mosaic_path, "rb") as f:
                    members[f"{w.key}.optic_mosaic.tif"] = f.read()
        meta["optical"] = optical
        if off:  # flagged: the view would be this far off, so none is made
            optical["status"] = (
                f"failed: the terrain puts the optical view up to {shift:.1f} px off the SAR "
                f"(> {limit} px: dem_use check geolocates at a constant height)"
            )
        if optical["status"] == "ok" and optic is not None:
            members[f"{w.key}.optic.png"] = encode_image(
                optic, "png", compress_level=cfg.png_compress_level
            )
    else:
        meta["optical"] = {
            "corners_wgs84": [c[:2] for c in meta["corners_llh"]],
            "source": None,
            "zoom": None,
            "status": NO_OPTICAL_SOURCE,
        }
    if cfg.landcover:
        codes, meta["landcover"] = landcover_of(w, ds, cfg)
        members[f"{w.key}.landcover.png"] = encode_image(
            codes, "png", compress_level=cfg.png_compress_level
        )
    meta["members"] = sorted([*members, f"{w.key}.meta.json"])
    meta["digests"] = {name: sha256(data) for name, data in sorted(members.items())}
    root = work.tile_dir(w.scene_id)
    for name, data in members.items():
        work.write_bytes(join(root, name), data)
    data = json_bytes(meta)
    work.write_bytes(work.tile_member(w.scene_id, w.key, "meta.json"), data)  # last: its marker
    return tile_summary(meta, sha256(data))


def make_tiles(
    work: Store,
    windows: Sequence[Window],
    cfg: TileConfig,
    scene_config: str | None = None,
) -> list[dict[str, Any]]:
    """`make_tile` over a group of windows (one task: see `tiles.tile_groups`), in order.

    A window that raises does not stop the others: its entry is `{"key", "status": "error",
    "reason", "exception"}`: the exception on one line, and its type.
    """
    out = []
    for w in windows:
        try:
            out.append(make_tile(work, w, cfg, scene_config))
        except Exception as exc:
            out.append(window_error(w.key, exc))
    return out
