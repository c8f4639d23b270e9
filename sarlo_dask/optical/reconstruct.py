"""Rebuild a released sample's warped optical image from its meta.json, or say why not.

A reconstruction is the build's image pixel for pixel or nothing: it goes through the build's
`render_optical` with the fit points and the model (`warp`: affine or mesh; an older meta.json
without it: the affine) meta.json records, and it refuses (ReconstructError)
whenever the source gives a different coverage than the build had, since the same warp over
other tiles would be a different image passed off as the build's.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from sarlo_dask.driver.outcomes import METADATA_ONLY
from sarlo_dask.errors import exception_line
from sarlo_dask.optical.mosaic import Mosaic
from sarlo_dask.optical.pair import render_optical
from sarlo_dask.optical.source import OpticalSource
from sarlo_dask.optical.sources import source_from_spec

RECONSTRUCT_HTTP: dict[str, Any] = {
    "timeout": 5.0,
    "retries": 1,
    "backoff": 0.2,
    "fail_fast": True,
}
"""HTTP settings of a reconstruction: one sample, a user waiting, so the first tile that
still fails after a retry stops it (the build keeps its own, patient settings)"""


class ReconstructError(Exception):
    """No image: the sample has none to rebuild, or the source does not give the build's."""


def load_sample(url: str) -> dict[str, Any]:
    """A sample's meta.json (path or URL); ValueError, one line, when it is not one."""
    from sarlo_dask.store import filesystem

    try:
        fs, path = filesystem(url)
        with fs.open(path, "rb") as f:
            meta = json.loads(f.read())
    except FileNotFoundError:
        raise ValueError(f"{url}: no such file") from None
    except (OSError, ValueError) as exc:  # JSONDecodeError is a ValueError
        raise ValueError(f"{url}: not readable as JSON ({exception_line(exc)})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("optical"), dict):
        raise ValueError(f"{url}: not a sample's meta.json (no `optical` section)")
    if "Nb_pixel_a" not in meta:
        raise ValueError(f"{url}: not a sample's meta.json (no `Nb_pixel_a`)")
    return meta


def _check_sample(opt: dict[str, Any]) -> None:
    if opt.get("status") not in ("ok", METADATA_ONLY) or not opt.get("fit_points"):
        why = opt.get("status") or "no status"
        raise ReconstructError(f"the build made no optical image for this sample ({why})")


def resolve_source(meta: dict[str, Any], spec: str | None, **http: Any) -> OpticalSource:
    """The source named by `spec`, or by what meta.json records when `spec` is None.

    meta.json records a folder or GeoTIFF by its absolute path (`folder:PATH`,
    `geotiff:PATH`: found from any folder of the machine that built it; elsewhere `spec`
    names it) and a template without its credentials. ValueError (a usage error) when the
    spec is not usable or not the kind of source the build used.
    """
    opt = meta["optical"]
    _check_sample(opt)
    recorded = spec is None
    spec = opt.get("source") if spec is None else spec
    if not spec:
        raise ValueError("meta.json records no optical source: give --source")
    try:
        source = source_from_spec(spec, opt.get("zoom") or 0, **http)
    except ValueError as exc:
        hint = " (as meta.json records it: give --source)" if recorded else ""
        raise ValueError(f"{exc}{hint}") from None
    shown = source.spec()  # a template's credentials never reach a message
    if (source.zoom is None) != (opt.get("zoom") is None):
        built = "a GeoTIFF" if opt.get("zoom") is None else f"XYZ tiles at zoom {opt['zoom']}"
        raise ValueError(f"optical source {shown}: the build used {built} ({opt.get('source')})")
    if source.zoom is None and (why := source.check()):  # a raster opens; tiles are fetched
        raise ValueError(f"optical source {shown}: {why}")
    return source


def _compare(opt: dict[str, Any], m: Mosaic, valid: np.ndarray, name: str) -> None:
    """ReconstructError unless the mosaic covers what the build's did (metadata only: the
    build fetched nothing, so every tile the sample needs must be delivered, some not empty)."""
    if m.failures:
        raise ReconstructError(
            f"{name}: {m.failures[0]} ({len(m.failures)} of {m.tiles} tiles not delivered)"
        )
    if opt.get("status") == METADATA_ONLY:
        if m.missing == m.tiles:
            raise ReconstructError(
                f"{name} has none of the {m.tiles} optical tiles this sample needs"
            )
        return
    if m.tiles != opt.get("tiles", m.tiles):
        raise ReconstructError(
            f"{name}: {m.tiles} optical tiles needed where the build used {opt['tiles']}"
        )
    empty = opt.get("tiles_empty", 0)
    if m.missing == m.tiles and m.tiles > empty:
        raise ReconstructError(f"{name} has none of the {m.tiles} optical tiles this sample needs")
    if m.missing != empty:
        raise ReconstructError(
            f"{name} lacks {m.missing} of the {m.tiles} optical tiles this sample needs where "
            f"the build lacked {empty}: the image would not be the build's"
        )
    recorded = opt.get("valid_fraction")
    if recorded is not None and abs(float(valid.mean()) - recorded) * valid.size > 0.5:
        raise ReconstructError(
            f"{name}: valid optical fraction {float(valid.mean()):.4f} where the build had "
            f"{recorded:.4f}: the image would not be the build's"
        )


def reconstruct_optical(meta: dict[str, Any], source: OpticalSource) -> np.ndarray:
    """The sample's warped optical image as the build made it (paper's procedure).

    Pixel-identical or ReconstructError: the sample must have an image (status ok), and the
    source must deliver every tile (no failure) and miss exactly the tiles' count the build
    missed (`tiles_empty`), with the same valid fraction. Content is not checked (meta.json
    keeps no checksum of the image): the same source is trusted to serve the same pixels.
    """
    opt = meta["optical"]
    _check_sample(opt)
    pts = np.asarray(opt["fit_points"], dtype="float64")
    zoom = opt["zoom"] if opt["zoom"] is not None else 0
    size = int(meta["Nb_pixel_a"])
    warp = opt.get("warp") or {"model": "affine"}
    mesh = int(warp["grid"]) if warp.get("model") == "mesh" else 0
    name = source.spec()
    try:
        image, valid, _, mosaic = render_optical(
            pts[:, :2], pts[:, 2:4], source, zoom, size, mesh=mesh
        )
    except OSError as exc:  # an unreadable GeoTIFF (rasterio's errors are OSErrors)
        raise ReconstructError(f"{name}: {exception_line(exc)}") from None
    _compare(opt, mosaic, valid, name)
    return image
