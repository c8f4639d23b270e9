"""The optical ground of a simulated scene: XYZ tiles of a known ground, with red disks on its
targets, for the optical pairing's tests and the demo (a tile server or folder serves them).
A scene with terrain (truth['terrain']) has its stripes hill-shaded by it; a landscape scene
(spec ground "landscape") shows its landscape (sim.ground) in colour."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from sarlo_dask.sim.ground import Ground
    from sarlo_dask.sim.terrain import Terrain

MARKER_RADIUS_M = 1.6
LANDSCAPE_MARKER_M = 4.0
"""a landscape's markers: seen in a picture of whole tiles (10 px across at 0.8 m)"""
SUN_ENU = np.array([-0.5, 0.5, np.sqrt(0.5)])
"""hillshade light: from the north-west, 45 degrees up"""


def hillshade(terrain: Terrain, lat: Any, lon: Any) -> Any:
    """A brightness factor (1 on flat ground, 0.3 to 1.29) lighting the terrain from SUN_ENU."""
    from sarlo_dask.sim.terrain import terrain_normal_enu

    lit = np.clip(terrain_normal_enu(terrain, lat, lon) @ SUN_ENU, 0.0, 1.0)
    return 0.3 + 0.7 * lit / SUN_ENU[2]


def render_ground_tile(
    z: int,
    x: int,
    y: int,
    markers: list[tuple[float, float]],
    terrain: Terrain | None = None,
    ground: Ground | None = None,
) -> bytes:
    """A 256 px XYZ tile (PNG) of a known ground: grey stripes, hill-shaded by `terrain` if
    given, or the landscape `ground` in colour; red disks at `markers` (lat, lon).

    The optical counterpart of a simulated scene: the markers sit on its targets.
    """
    import io

    from PIL import Image

    from sarlo_dask.optical.tilemath import TILE_PX, lonlat_of_pixel

    i = np.arange(TILE_PX) + 0.5
    gx, gy = np.meshgrid(x * TILE_PX + i, y * TILE_PX + i)
    lon, lat = lonlat_of_pixel(gx, gy, z)
    if ground is not None:  # never pure red either
        rgb = ground.rgb(*ground.local(lat, lon))
    else:
        grey = 90 + 40 * np.sin(lon * 6000.0) + 30 * np.cos(lat * 5000.0)  # never pure red
        if terrain is not None:
            grey = np.clip(grey * hillshade(terrain, lat, lon), 0, 255)  # still grey
        rgb = np.repeat(grey[..., None], 3, axis=2)
    radius = MARKER_RADIUS_M if ground is None else LANDSCAPE_MARKER_M
    pad = radius / 111_320.0  # degrees of latitude: a marker further off paints nothing here
    south, north, west, east = lat.min() - pad, lat.max() + pad, lon.min(), lon.max()
    for mlat, mlon in markers:
        wide = pad / np.cos(np.radians(mlat))
        if not (south <= mlat <= north and west - wide <= mlon <= east + wide):
            continue
        dy = (lat - mlat) * 111_320.0
        dx = (lon - mlon) * 111_320.0 * np.cos(np.radians(mlat))
        rgb[np.hypot(dx, dy) < radius] = (255, 0, 0)
    buf = io.BytesIO()
    # zlib's fastest level: a simulated tile is written once and read a few times
    Image.fromarray(rgb.astype(np.uint8)).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def simulate_optical_tiles(
    folder: str | Path,
    truth: dict[str, Any],
    zoom: int = 18,
    margin_deg: float = 0.01,
    latlon: Any = None,
    overwrite: bool = False,
) -> int:
    """Write the XYZ tiles covering a simulated scene's targets, or the points `latlon`
    ((n, 2) degrees, e.g. its image corners), plus a margin, to `folder`; tiles already there
    are kept unless `overwrite`. How many were written."""
    from sarlo_dask.optical.tilemath import tiles_for_bbox
    from sarlo_dask.sim.ground import Ground
    from sarlo_dask.sim.terrain import terrain_from_dict

    terrain = terrain_from_dict(truth["terrain"]) if "terrain" in truth else None
    spec = truth["spec"]
    ground = Ground(spec["lat"], spec["lon"], spec["seed"]) if spec.get("ground") else None
    markers = [(t["llh"][0], t["llh"][1]) for t in truth["targets"]]
    points = np.asarray(latlon if latlon is not None else markers, dtype="float64")
    if not len(points):
        points = np.array([[truth["spec"]["lat"], truth["spec"]["lon"]]])
    (south, west), (north, east) = points.min(axis=0), points.max(axis=0)
    x0, y0, x1, y1 = tiles_for_bbox(
        west - margin_deg, south - margin_deg, east + margin_deg, north + margin_deg, zoom
    )
    n = 0
    for x in range(x0, x1 + 1):
        for y in range(y0, y1 + 1):
            path = Path(folder, str(zoom), str(x), f"{y}.png")
            if overwrite or not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(render_ground_tile(zoom, x, y, markers, terrain, ground))
                n += 1
    return n
