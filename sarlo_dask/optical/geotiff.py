"""A georeferenced raster (GeoTIFF, COG, any CRS rasterio reads) as an optical source, read
by window."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sarlo_dask.errors import exception_chain, redact
from sarlo_dask.optical.mosaic import Mosaic
from sarlo_dask.optical.source import OpticalSource
from sarlo_dask.optical.warp import rgba
from sarlo_dask.store import canonical


@dataclass(frozen=True)
class GeoTIFFSource(OpticalSource):
    """A georeferenced raster (GeoTIFF / COG, any CRS rasterio knows), read by window."""

    kind = "geotiff"
    path: str

    @classmethod
    def parse(cls, spec: str, zoom: int, **options: Any) -> GeoTIFFSource | None:
        """`geotiff:PATH` (what meta.json records) or a path or URL ending .tif / .tiff."""
        if spec.startswith("geotiff:"):
            return cls(spec.removeprefix("geotiff:"))
        return cls(spec) if spec.lower().endswith((".tif", ".tiff")) else None

    def describe(self) -> str:
        """`geotiff:PATH`, absolute when local: it resolves from any folder."""
        return f"geotiff:{canonical(self.path) if '://' not in self.path else redact(self.path)}"

    def spec(self) -> str:
        return f"geotiff:{redact(self.path)}"

    def check(self) -> str:
        import rasterio

        if "://" not in self.path and not Path(self.path).is_file():
            return "no such file"
        try:
            rasterio.open(self.path).close()
        except Exception as exc:
            return exception_chain(exc)
        return ""

    def window(self, west: float, south: float, east: float, north: float) -> Mosaic:
        """The raster's pixels over the bbox (2 px of margin), RGBA, in its own CRS."""
        import rasterio
        from rasterio.warp import transform_bounds
        from rasterio.windows import Window, from_bounds

        with rasterio.open(self.path) as ds:
            left, bottom, right, top = transform_bounds(
                "EPSG:4326", ds.crs, west, south, east, north
            )
            win = from_bounds(left, bottom, right, top, transform=ds.transform)
            c0, r0 = int(np.floor(win.col_off)) - 2, int(np.floor(win.row_off)) - 2
            c1 = int(np.ceil(win.col_off + win.width)) + 2
            r1 = int(np.ceil(win.row_off + win.height)) + 2
            c0, r0, c1, r1 = max(c0, 0), max(r0, 0), min(c1, ds.width), min(r1, ds.height)
            if c1 <= c0 or r1 <= r0:
                return Mosaic(
                    np.zeros((1, 1, 4), np.uint8),
                    crs=ds.crs.to_string(),
                    transform=tuple(ds.transform)[:6],
                    failures=["the GeoTIFF does not cover the tile"],
                )
            window = Window(c0, r0, c1 - c0, r1 - r0)
            bands = [1, 2, 3] if ds.count >= 3 else [1, 1, 1]
            data = ds.read(bands, window=window)
            mask = ds.read_masks(1, window=window) > 0
            if data.dtype != np.uint8:
                lo, hi = np.percentile(data[:, mask], [1, 99]) if mask.any() else (0, 1)
                data = np.clip((data - lo) / max(hi - lo, 1e-12) * 255, 0, 255)
            wt = ds.window_transform(window)
            return Mosaic(
                rgba(np.moveaxis(data, 0, -1).astype(np.uint8), mask),
                crs=ds.crs.to_string(),
                transform=tuple(wt)[:6],
                tiles=1,
            )
