"""A height source from outside sarlo-dask, as an installed package would ship it: `flat:H`,
the ground at H metres above the WGS 84 ellipsoid everywhere (a grid of 1e-4 degrees)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from sarlo_dask import DemGrid, HeightSource
from sarlo_dask.geometry.heights import Box, Reader

STEP = 1e-4


@dataclass(frozen=True)
class Flat(HeightSource):
    kind = "flat"
    height: float

    @classmethod
    def parse(cls, spec: str, vertical_datum: str, storage_options: dict[str, Any]) -> Flat | None:
        if not spec.startswith("flat:"):
            return None
        try:
            return cls(float(spec.removeprefix("flat:")))
        except ValueError:
            raise ValueError(f"height source {spec!r}: flat:HEIGHT, metres") from None

    def describe(self) -> str:
        return f"flat:{self.height:g}"

    @contextmanager
    def reader(self) -> Iterator[Reader]:
        def read(box: Box) -> DemGrid:
            west, south, east, north = box
            lat0, lon0 = np.ceil(north / STEP) * STEP, np.floor(west / STEP) * STEP
            rows = int(np.ceil((lat0 - south) / STEP)) + 1
            cols = int(np.ceil((east - lon0) / STEP)) + 1
            heights = np.full((rows, cols), self.height, dtype="float32")
            return DemGrid(heights, float(lat0), float(lon0), -STEP, STEP, self.describe())

        yield read
