"""What a scene must be to be standardized, and whether a build selects it: checks of its
SICD header alone (pure: no file is read), each failure refused with one reason."""

from __future__ import annotations

from typing import Any

import numpy as np

from sarlo_dask.errors import SceneError
from sarlo_dask.geometry import geolocation
from sarlo_dask.geometry.formation import DECLARED, model_findings, projection_model
from sarlo_dask.geometry.sicd import quiet
from sarlo_dask.io.nitf import PIXEL_BYTES

SICD_PIXEL_TYPES = tuple(PIXEL_BYTES)


def check_sicd(
    sicd: Any,
    where: str,
    finest: float,
    coarsest: float,
    polarizations: tuple[str, ...] | None = None,
    select_by: str = "spacing",
) -> None:
    """Refuse what cannot be standardized or is not selected, with one reason per failure.
    `select_by` names what the native bounds `finest`-`coarsest` (m) apply to: the grid's
    `spacing` (SS) or its `resolution` (ImpRespWid)."""
    img, grid = sicd.ImageData, sicd.Grid
    if img is None or grid is None or grid.Row is None or grid.Col is None:
        raise SceneError(where, "missing ImageData or Grid metadata")
    if img.PixelType not in SICD_PIXEL_TYPES:
        raise SceneError(where, f"unsupported pixel type {img.PixelType}")
    info = sicd.CollectionInfo
    if info is not None and info.CollectType == "BISTATIC" and not geolocation.BISTATIC_OK:
        raise SceneError(
            where,
            "bistatic collection: sarkit < 1.9 (the newest for Python 3.11) projects bistatic "
            "pixels up to decimetres off (its transmit/receive times depend on the other "
            "points of a call); use Python >= 3.12",
        )
    model = projection_model(sicd)
    if isinstance(model, str):
        raise SceneError(where, f"unsupported image formation {model}")
    for name, d in (("Row", grid.Row), ("Col", grid.Col)):
        if d.SS is None or not d.SS > 0 or not np.isfinite(d.SS):
            raise SceneError(where, f"degenerate metadata: Grid.{name}.SS = {d.SS}")
        if d.ImpRespBW is None or not d.ImpRespBW > 0:
            raise SceneError(where, f"degenerate metadata: Grid.{name}.ImpRespBW = {d.ImpRespBW}")
        if d.ImpRespBW * d.SS > 1.0 + 1e-6:
            raise SceneError(
                where,
                f"inconsistent metadata: Grid.{name} ImpRespBW*SS = "
                f"{d.ImpRespBW * d.SS:.3f} > 1 (undersampled)",
            )
        uv = d.UVectECF.get_array() if d.UVectECF is not None else np.zeros(3)
        if not np.linalg.norm(uv) > 0.5:
            raise SceneError(where, f"degenerate metadata: Grid.{name}.UVectECF is zero")
        if d.Sgn not in (-1, 1):
            raise SceneError(where, f"degenerate metadata: Grid.{name}.Sgn = {d.Sgn}")
    if sicd.Position is None or sicd.Position.ARPPoly is None:
        raise SceneError(where, "missing Position.ARPPoly: cannot geolocate")
    if sicd.GeoData is None or sicd.GeoData.SCP is None:
        raise SceneError(where, "missing GeoData.SCP: cannot geolocate")
    if not np.linalg.norm(sicd.GeoData.SCP.ECF.get_array()) > 6.0e6:
        raise SceneError(where, "degenerate metadata: GeoData.SCP is not on the Earth")
    with quiet():
        projectable = sicd.can_project_coordinates()
    if not projectable:
        raise SceneError(
            where,
            f"incomplete {model.model}/{grid.Type} geometry metadata: sarpy cannot "
            "project it (cannot geolocate)",
        )
    if model.declared not in DECLARED:  # an undeclared model must agree with the geometry
        with quiet():
            xml = sicd.to_xml_string(tag="SICD", check_validity=False)
            found = model_findings(xml, model.model)
        if found:
            raise SceneError(
                where,
                f"image formation {model.declared}: its {model.model} block contradicts its "
                f"own geometry (sarkit {found[0]})",
            )
    if polarizations is not None:
        form = sicd.ImageFormation
        pol = str(getattr(form, "TxRcvPolarizationProc", None) or "unknown")
        if pol not in polarizations:
            raise SceneError(
                where, f"polarization {pol} is not selected ({', '.join(polarizations)})"
            )
    field = {"spacing": "SS", "resolution": "ImpRespWid"}[select_by]
    for name, d in (("row (range)", grid.Row), ("column (azimuth)", grid.Col)):
        value = getattr(d, field)
        if value is None or not np.isfinite(value):
            raise SceneError(
                where,
                f"no Grid.{name.split()[0].title()}.{field}: cannot select by {select_by} "
                f"(select_by: {'spacing' if select_by == 'resolution' else 'resolution'} "
                "reads the other)",
            )
        if not finest <= value <= coarsest:
            raise SceneError(
                where,
                f"native {name} {select_by} {value:.3f} m is outside the selection range "
                f"{finest}-{coarsest} m (select_by: {select_by}, Grid {field})",
            )
