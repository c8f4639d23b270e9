"""A global grid key per sample: Major TOM's grid (Francis & Czerkawski, 2024), the key its
datasets (Core-S1RTC, Core-S2L2A...) are joined by, so a sample here joins theirs.

The grid's definition (ESA-PhiLab/Major-TOM, `grid.py`, at D = 10 km on a sphere of the
equatorial radius R = 6378.137 km): rows are bounded by the latitudes k * dlat, dlat =
180 / ceil(pi R / D) degrees; row k >= 0 is 'kU', row k < 0 is '|k|D'. In the row whose lower
edge is lat_k, columns are bounded by the longitudes j * dlon_k, dlon_k = 360 /
ceil(2 pi R cos(lat_k) / D); column j >= 0 is 'jR', j < 0 is '|j|L'. A point belongs to the
cell whose lower-left corner is the last grid line strictly below and left of it (Major TOM's
`searchsorted(...) - 1`), and a cell is named 'ROW_COL', e.g. '451U_946L'. The grid covers
latitudes within +-85 degrees.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

RADIUS_KM = 6378.137
CELL_KM = 10.0
GRID_NAME = "Major TOM 10 km"
MAX_LATITUDE = 85.0


def row_step(cell_km: float = CELL_KM) -> float:
    """Degrees of latitude between the grid's row lines."""
    return 180.0 / math.ceil(math.pi * RADIUS_KM / cell_km)


def col_step(row: int, cell_km: float = CELL_KM) -> float:
    """Degrees of longitude between the column lines of row `row` (signed row number)."""
    lat = row * row_step(cell_km)
    return 360.0 / math.ceil(2 * math.pi * RADIUS_KM * math.cos(math.radians(lat)) / cell_km)


def cell_of(lat: float, lon: float, cell_km: float = CELL_KM) -> tuple[int, int] | None:
    """(row, col), signed (U/R positive), of the cell holding (lat, lon) in degrees; None
    outside the grid's latitudes."""
    if not (-MAX_LATITUDE <= lat <= MAX_LATITUDE) or not math.isfinite(lon):
        return None
    row = math.ceil(lat / row_step(cell_km)) - 1
    if row * row_step(cell_km) < -MAX_LATITUDE:  # Major TOM keeps no row below -85 deg
        return None
    lon = float(lon_offset(lon, 0.0))
    step = col_step(row, cell_km)
    col = math.ceil(lon / step) - 1
    if col < math.ceil(-180.0 / step - 1e-9):  # west of the first line: the last column
        col = math.ceil(180.0 / step - 1e-9) - 1
    return row, col


def cell_id(row: int, col: int) -> str:
    """Major TOM's name of a signed cell: (451, -946) -> '451U_946L'."""
    rows = f"{row}U" if row >= 0 else f"{-row}D"
    return f"{rows}_{col}R" if col >= 0 else f"{rows}_{-col}L"


def cell_corner(row: int, col: int, cell_km: float = CELL_KM) -> tuple[float, float]:
    """(lat, lon) of the cell's lower-left corner, degrees."""
    return row * row_step(cell_km), col * col_step(row, cell_km)


def lon_offset(lon: Any, lon0: float) -> Any:
    """Degrees east of `lon0`, in [-180, 180): longitudes compared across the antimeridian."""
    return (np.asarray(lon, dtype=np.float64) - lon0 + 180.0) % 360.0 - 180.0


def ring_points(ring: Sequence[Sequence[float]]) -> np.ndarray:
    """A GeoJSON ring's distinct vertices (lon, lat) as (n, 2), longitudes continuous from the
    first one (a ring across 180 degrees is not split)."""
    pts = np.asarray(ring, dtype=np.float64)[:, :2].copy()
    if len(pts) > 1 and (pts[0] == pts[-1]).all():
        pts = pts[:-1]
    pts[:, 0] = pts[0, 0] + lon_offset(pts[:, 0], pts[0, 0])
    return pts


def ring_centre(ring: Sequence[Sequence[float]]) -> tuple[float, float]:
    """(lat, lon) of the mean of a closed GeoJSON ring's distinct vertices (a tile's footprint
    is a few hundred metres: its vertices' mean lies inside it)."""
    pts = ring_points(ring)
    return float(pts[:, 1].mean()), float(pts[:, 0].mean())


def sample_grid(footprint: Mapping[str, Any]) -> dict[str, Any]:
    """meta.json's `grid` of a sample from its GeoJSON footprint: the Major TOM cell of the
    mean of its vertices, a point inside the tile ({name, cell, row, col}; cell None with a
    reason outside the grid)."""
    lat, lon = ring_centre(footprint["coordinates"][0])
    found = cell_of(lat, lon)
    if found is None:
        return {
            "name": GRID_NAME,
            "cell": None,
            "reason": f"centre at latitude {lat:.3f}: the grid covers +-{MAX_LATITUDE} deg",
        }
    row, col = found
    return {"name": GRID_NAME, "cell": cell_id(row, col), "row": row, "col": col}
