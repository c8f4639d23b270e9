"""A scene reader from outside sarlo-dask, as an installed package would ship it: `*.sicd.npz`,
a NumPy archive holding a scene's SICD XML (`xml`) and its complex pixels (`pixels`,
NumRows x NumCols), the shape a converter from a vendor's own format might write."""

from __future__ import annotations

from typing import Any

import fsspec
import numpy as np

from sarlo_dask import SceneReader, sicd_from_xml
from sarlo_dask.errors import SceneError


def write_npz(path: str, xml: str, pixels: np.ndarray) -> None:
    """A scene in this format (what the tests convert a SICD NITF to)."""
    with open(path, "wb") as f:
        np.savez(f, xml=np.array(xml), pixels=pixels.astype(np.complex64))


class NpzReader(SceneReader):
    kind = "sicd-npz"
    suffixes = (".sicd.npz",)

    def _load(self, url: str, storage_options: dict[str, Any] | None, name: str) -> Any:
        with fsspec.open(url, "rb", **(storage_options or {})) as f, np.load(f) as z:
            if name not in z.files:
                raise SceneError(url, f"no '{name}' array in the archive (not a sicd.npz)")
            return z[name]

    def sicd(self, url: str, storage_options: dict[str, Any] | None) -> Any:
        return sicd_from_xml(str(self._load(url, storage_options, "xml")))

    def rows(
        self, url: str, storage_options: dict[str, Any] | None, r0: int, r1: int
    ) -> np.ndarray:
        return self._load(url, storage_options, "pixels")[r0:r1]
