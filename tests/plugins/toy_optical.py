"""A toy optical source from outside the package, installed through the
`sarlo_dask.optical_sources` entry point (the dist-info beside it): XYZ tiles of diagonal
stripes, `stripes:PERIOD` (pixels), rendered on demand. It stands for a user's own source (an
archive, a mirror, a tile format the package does not know): one module, one class."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from sarlo_dask import XYZSource


@dataclass(frozen=True)
class StripesXYZ(XYZSource):
    kind = "stripes"
    period: int
    zoom: int = 18

    @classmethod
    def parse(cls, spec: str, zoom: int, **options: Any) -> StripesXYZ | None:
        if not spec.startswith("stripes:"):
            return None
        return cls(int(spec.removeprefix("stripes:")), zoom)

    def describe(self) -> str:
        return f"stripes:{self.period}"

    def fetch(self, tiles: list[tuple[int, int, int]]) -> dict[tuple[int, int, int], Any]:
        out = {}
        for z, x, y in tiles:
            j, i = np.meshgrid(np.arange(256) + x * 256, np.arange(256) + y * 256)
            grey = np.where(((i + j) // self.period) % 2 == 0, 200, 60).astype(np.uint8)
            buf = io.BytesIO()
            Image.fromarray(np.stack([grey, grey // 2 + 40, 255 - grey], -1)).save(buf, "PNG")
            out[(z, x, y)] = buf.getvalue()
        return out
