"""What users select samples by, from the scene's SICD: sensor, mode, time, polarization,
viewing geometry, frequency, resolution and spacing (pure functions, no I/O).

A value the SICD does not carry is null, and `unknown` says why, field by field."""

from __future__ import annotations

from datetime import date
from typing import Any

import numpy as np

from sarlo_dask.geometry.formation import ProjectionModel, projection_model
from sarlo_dask.geometry.formation import sicd_field as _get

SCHEMA_VERSION = "2.4"
"""of meta.json (sarlo_dask/schemas/meta.schema.json); 1.x: before the acquisition block;
2.1: the `terrain` section of builds with a DEM; 2.2: `source_url` relative to the catalogue
root for local inputs, no `city_id_satellite_pass` (the same value as `pass_id`); 2.3:
`acquisition.image_formation` (declared algorithm, projection model, why), `quality` (the
equivalent number of looks); 2.4: `grid` (Major TOM cell), `group` (samples of the same
ground), `quality.saturated_fraction` and `quality.phash`, `acquisition.core_name` and
`collection_parameters`, `optical.licence` and `attribution`, `landcover`"""


def orbit_direction(sicd: Any) -> str | None:
    """ascending or descending: the sign of the platform's northward velocity at the SCP."""
    vel, llh = _get(sicd, "SCPCOA.ARPVel"), _get(sicd, "GeoData.SCP.LLH")
    if vel is None or llh is None:
        return None
    lat, lon = np.radians(llh.Lat), np.radians(llh.Lon)
    north = np.array([-np.sin(lat) * np.cos(lon), -np.sin(lat) * np.sin(lon), np.cos(lat)])
    v_north = float(np.dot(vel.get_array(dtype="float64"), north))
    return "ascending" if v_north > 0 else "descending"


def centre_frequency(sicd: Any) -> float | None:
    """The processed band's centre (ImageFormation.TxFrequencyProc), else the transmitted one."""
    for path, lo, hi in (
        ("ImageFormation.TxFrequencyProc", "MinProc", "MaxProc"),
        ("RadarCollection.TxFrequency", "Min", "Max"),
    ):
        band = _get(sicd, path)
        if band is not None and getattr(band, lo, None) and getattr(band, hi, None):
            return float((getattr(band, lo) + getattr(band, hi)) / 2)
    return None


def _axes(sicd: Any, field: str) -> dict[str, float | None]:
    row, col = _get(sicd, f"Grid.Row.{field}"), _get(sicd, f"Grid.Col.{field}")
    return {
        "range": float(row) if row is not None else None,
        "azimuth": float(col) if col is not None else None,
    }


def collection_parameters(sicd: Any) -> dict[str, str]:
    """CollectionInfo's Parameters as the vendor wrote them (Umbra's task_id, Sentinel-1's
    auxiliary products...): the product's own identifiers beside its CoreName."""
    params = getattr(getattr(sicd, "CollectionInfo", None), "Parameters", None)
    return {str(k): str(v) for k, v in sorted((params.to_dict() if params else {}).items())}


def acquisition(sicd: Any, source: Any, incidence_deg: float) -> dict[str, Any]:
    """meta.json's `acquisition` block: `sicd` the tile's (resampled) SICD, `source` the
    scene's own, `incidence_deg` the ellipsoid incidence at the tile's centre."""
    start = _get(source, "Timeline.CollectStart")
    pol = _get(source, "ImageFormation.TxRcvPolarizationProc")
    out = {
        "collector": _get(source, "CollectionInfo.CollectorName"),
        "mode": _get(source, "CollectionInfo.RadarMode.ModeType"),
        "mode_id": _get(source, "CollectionInfo.RadarMode.ModeID"),
        "core_name": _get(source, "CollectionInfo.CoreName"),
        "collection_parameters": collection_parameters(source),
        "collect_start": str(np.datetime_as_string(start, unit="us")) + "Z"
        if start is not None
        else None,
        "polarization": str(pol) if pol is not None else None,
        "look_side": {"L": "left", "R": "right"}.get(str(_get(source, "SCPCOA.SideOfTrack"))),
        "orbit_direction": orbit_direction(source),
        "incidence_deg": incidence_deg,
        "grazing_deg": 90.0 - incidence_deg,
        "centre_frequency_hz": centre_frequency(source),
        "resolution_m": {
            "native": _axes(source, "ImpRespWid"),
            "output": _axes(sicd, "ImpRespWid"),
        },
        "spacing_m": {"native": _axes(source, "SS"), "output": _axes(sicd, "SS")},
    }
    model = projection_model(source)
    if isinstance(model, ProjectionModel):  # always, for a scene the checks let through
        out["image_formation"] = model.record()
    reasons = {
        "collector": "no CollectionInfo.CollectorName in the SICD",
        "mode": "no CollectionInfo.RadarMode in the SICD",
        "mode_id": "no RadarMode.ModeID in the SICD (optional)",
        "core_name": "no CollectionInfo.CoreName in the SICD",
        "collect_start": "no Timeline.CollectStart in the SICD",
        "polarization": "no ImageFormation.TxRcvPolarizationProc in the SICD",
        "look_side": "no SCPCOA.SideOfTrack in the SICD",
        "orbit_direction": "no SCPCOA.ARPVel or SCP in the SICD",
        "centre_frequency_hz": "no TxFrequencyProc or TxFrequency band in the SICD",
    }
    out["unknown"] = {k: why for k, why in reasons.items() if out[k] is None}
    return out


def date_gap_days(collect_start: str | None, optical: date | None) -> int | None:
    """Whole days from the optical image's acquisition to the SAR collect (positive: the SAR
    is later), UTC dates; None when either is unknown."""
    if collect_start is None or optical is None:
        return None
    return (date.fromisoformat(collect_start[:10]) - optical).days


def footprint(llh: np.ndarray) -> dict[str, Any]:
    """The tile's footprint as a GeoJSON Polygon (RFC 7946: lon/lat, counter-clockwise,
    closed): the convex hull of geolocated points on its border (and inside), so that it holds
    every pixel of the tile."""
    from scipy.spatial import ConvexHull

    lonlat = np.asarray(llh, dtype="float64")[:, 1::-1]
    hull = ConvexHull(lonlat)  # vertices counter-clockwise in 2-D
    ring = [[float(x), float(y)] for x, y in lonlat[hull.vertices]]
    return {"type": "Polygon", "coordinates": [[*ring, ring[0]]]}
