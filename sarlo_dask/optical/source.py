"""The optical source interface: what the tile stage, the XYZ prefetch, the preflight and
`sarlo optical reconstruct` ask of a source, so that none of them asks which source it is.

Two families: an `XYZSource` serves 256 px web-mercator tiles at one zoom (fetched in batches,
mosaicked by `mosaic.xyz_mosaic`); any other source reads the window over a bbox itself
(`OpticalSource.window`, e.g. a GeoTIFF). A variant is one class with a `kind` name and a
`parse` that claims the specs it understands; `sources.register` (or the
`sarlo_dask.optical_sources` entry point group, for an installed package) makes
`source_from_spec` try it before the built-in kinds. A source is pickled to the workers:
keep it a small frozen dataclass of settings.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from sarlo_dask.driver.integrity import Damage
    from sarlo_dask.optical.mosaic import Mosaic


@dataclass(frozen=True)
class TileFailure:
    """Why a tile could not be had after the source's retries."""

    reason: str


TileResult = bytes | None | TileFailure
"""per XYZ tile: the image bytes, None for a tile the source does not have (empty), or why
it failed"""
Tile = tuple[int, int, int]
"""(z, x, y)"""


class OpticalSource(ABC):
    """An optical image source the SAR tiles are paired with."""

    kind: ClassVar[str]
    """its name in messages and in `sarlo_dask.optical_sources` entry points"""

    @classmethod
    @abstractmethod
    def parse(cls, spec: str, zoom: int, **options: Any) -> OpticalSource | None:
        """The source `spec` names, or None when it is not one of this kind's (the next kind
        is tried). `options` are the tile stage's HTTP and cache settings (timeout, retries,
        backoff, max_workers, rate, cache_dir, cache_options, fail_fast): take what applies.
        Raise ValueError, naming the spec, for a spec of this kind that is wrong."""

    @abstractmethod
    def describe(self) -> str:
        """What meta.json records: `parse` takes it back from any folder, no credential in it."""

    def spec(self) -> str:
        """The spec in messages (credentials masked): describe()'s unless it says more."""
        return self.describe()

    @property
    def zoom(self) -> int | None:
        """The XYZ zoom its tiles are read at; None for a source read by window."""
        return None

    def check(self) -> str:
        """Why it cannot serve at all ("" when it can): the preflight's one probe, in seconds
        (a server answers, a file opens, a folder holds tiles)."""
        return ""

    def window(self, west: float, south: float, east: float, north: float) -> Mosaic:
        """The image over a WGS84 bbox (sources that are not XYZ)."""
        raise NotImplementedError(f"{type(self).__name__} reads no window")


class XYZSource(OpticalSource):
    """A source of 256 px XYZ tiles at one zoom."""

    prefetchable: ClassVar[bool] = False
    """whether the build's XYZ prefetch should fetch its tiles into a shared cache first
    (a remote server); a local folder needs none"""

    @property
    @abstractmethod
    def zoom(self) -> int: ...

    @abstractmethod
    def fetch(self, tiles: list[Tile]) -> dict[Tile, TileResult]:
        """Each of `tiles`: its image bytes, None (empty) or a TileFailure."""

    def zoom_levels(self) -> list[int] | None:
        """The zoom levels it holds, when it can say (a folder); None: it cannot."""
        return None

    def cached(self, tiles: Iterable[Tile], damaged: list[Damage] | None = None) -> set[Tile]:
        """Those of `tiles` its cache already holds (prefetchable sources); a damaged cached
        image is left out and appended to `damaged`."""
        return set()
