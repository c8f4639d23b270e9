"""The datums of a DEM: its heights turned into heights above the WGS 84 ellipsoid (HAE)
through pyproj, and the horizontal datum it must be on.

The vertical datum comes from the file's CRS (EPSG:4979 is ellipsoidal; a compound CRS such
as EPSG:4326+3855, WGS 84 + EGM2008 height, says which geoid) or from the configuration
(hae, egm2008, egm96, or a geoid grid file). pyproj falls back silently to a "ballpark"
transformation that adds nothing when the geoid grid is not installed: that is refused.
"""

from __future__ import annotations

from typing import Any

from sarlo_dask.errors import DemError

DATUMS = {"egm2008": "EPSG:9518", "egm96": "EPSG:9707"}
"""named vertical datums: the compound CRS (WGS 84 + geoid height) their heights are in"""


def _is_geographic(crs: Any) -> bool:
    import pyproj

    p = pyproj.CRS.from_user_input(crs.to_wkt())
    horizontal = p.sub_crs_list[0] if p.is_compound else p
    return bool(horizontal.is_geographic)


def datum_transformer(crs: Any, vertical_datum: str, name: str) -> Any | None:
    """A pyproj transformer (lon, lat, height) -> (lon, lat, HAE), or None when the heights are
    already HAE. `vertical_datum`: auto (what the file's CRS declares), hae, egm2008, egm96,
    or the path of a geoid grid PROJ reads (undulation added: HAE = H + N)."""
    import pyproj
    from pyproj.transformer import Transformer, TransformerGroup

    if vertical_datum == "hae":
        return None
    if vertical_datum not in ("auto", *DATUMS):
        grid = vertical_datum
        return Transformer.from_pipeline(
            "+proj=pipeline +step +proj=unitconvert +xy_in=deg +xy_out=rad "
            f"+step +proj=vgridshift +grids={grid} +multiplier=1 "
            "+step +proj=unitconvert +xy_in=rad +xy_out=deg"
        )
    src: pyproj.CRS | None = None
    if vertical_datum in DATUMS:
        src = pyproj.CRS.from_user_input(DATUMS[vertical_datum])
    else:
        src = pyproj.CRS.from_user_input(crs.to_wkt()) if crs else None
        if src is None or (not src.is_compound and len(src.axis_info) < 3):
            raise DemError(
                f"DEM {name}: its CRS ({crs.to_string() if crs else 'none'}) does not say what "
                "its heights are measured from: set standardize.dem_vertical_datum to hae, "
                "egm2008, egm96 or a geoid grid file"
            )
        if not src.is_compound:
            return None  # a 3-D geographic CRS (EPSG:4979): ellipsoidal heights
    group = TransformerGroup(src, "EPSG:4979", always_xy=True)
    if not group.best_available or not group.transformers:
        missing = [g.short_name for op in group.unavailable_operations for g in op.grids]
        raise DemError(
            f"DEM {name}: the geoid grid that turns its {src.name} into ellipsoidal heights "
            f"is not installed ({', '.join(sorted(set(missing))) or 'no grid named'}): install "
            "it (`projsync --file NAME`, into pyproj's data folder) or give "
            "standardize.dem_vertical_datum a geoid grid file"
        )
    return group.transformers[0]


def check_crs(crs: Any, vertical_datum: str, name: str) -> Any | None:
    """The datum transformer of a DEM whose CRS is `crs`; DemError unless it is latitude and
    longitude on WGS 84 (another datum moves the ground by a metre or more: warp it first)."""
    if crs is None or not _is_geographic(crs):
        raise DemError(
            f"DEM {name}: its CRS ({crs}) is not geographic: reproject it to "
            "latitude/longitude first (e.g. gdalwarp -t_srs EPSG:4326)"
        )
    if not _on_wgs84(crs):
        raise DemError(
            f"DEM {name}: its horizontal datum is not WGS 84 ({crs}): warp it to WGS 84 "
            "first (e.g. gdalwarp -t_srs EPSG:4326)"
        )
    return datum_transformer(crs, vertical_datum, name)


def _on_wgs84(crs: Any) -> bool:
    import pyproj

    p = pyproj.CRS.from_user_input(crs.to_wkt())
    horizontal = p.sub_crs_list[0] if p.is_compound else p
    datum = horizontal.datum.name if horizontal.datum else ""
    return "WGS 84" in datum or "World Geodetic System 1984" in datum
