"""Height sources: what the scene stage projects pixels onto when `standardize.dem` names one
(without, the constant height `standardize.hae`, the SCP's by default, needs none).

A source gives heights above the WGS 84 ellipsoid over a (west, south, east, north) box as a
`dem.DemGrid`; `dem.scene_window` finds the box a scene needs. The built-in kind is a raster
DEM (a GeoTIFF/COG, a VRT or a folder of them, on any fsspec URL: `dem`). A variant is one
class with a `kind` and a `parse` that claims its specs; `register` (or the
`sarlo_dask.height_sources` entry point group, for an installed package) makes
`height_source` try it first. A source is pickled to the workers: keep it a small frozen
dataclass of settings.
"""

from __future__ import annotations

import json
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from sarlo_dask.errors import redact
from sarlo_dask.geometry.dem import (
    Box,
    DemGrid,
    OpenDem,
    dem_versions,
    open_dem,
    probe_dem,
    read_window,
)
from sarlo_dask.geometry.dem import scene_window as scene_window
from sarlo_dask.registry import Registry

Reader = Callable[[Box], DemGrid]
"""heights (HAE) over a (west, south, east, north) box, degrees"""


class HeightSource(ABC):
    """Heights above the WGS 84 ellipsoid under the scenes."""

    kind: ClassVar[str]
    """its name in messages and in `sarlo_dask.height_sources` entry points"""

    @classmethod
    @abstractmethod
    def parse(
        cls, spec: str, vertical_datum: str, storage_options: dict[str, Any]
    ) -> HeightSource | None:
        """The source `spec` names, or None when it is not one of this kind's. Raise
        ValueError, naming the spec, for a spec of this kind that is wrong."""

    @abstractmethod
    def describe(self) -> str:
        """What meta.json records as the scene's `dem` (no credential in it)."""

    @abstractmethod
    def reader(self) -> AbstractContextManager[Reader]:
        """Open it for one scene (a task): the context gives the box reader."""

    def versions(self) -> dict[str, str]:
        """What identifies its data (a file's size and time): when it changes, the stores
        projected on it are made again."""
        return {}

    def check(self) -> None:  # noqa: B027 (a kind with nothing to probe keeps it)
        """The preflight's probe, in seconds: raise DemError (one line) when it cannot serve."""

    def scene_grid(self, sicd: Any) -> DemGrid:
        """The heights a whole SICD image needs (`dem.scene_window`), named as described."""
        with self.reader() as read:
            return replace(scene_window(read, sicd), name=self.describe())


@dataclass(frozen=True)
class RasterDEM(HeightSource):
    """A GeoTIFF/COG, VRT or folder of them on any fsspec URL (the `dem` module): any spec
    no other kind claims."""

    kind = "raster"
    url: str
    vertical_datum: str = "auto"
    storage_options: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def parse(
        cls, spec: str, vertical_datum: str, storage_options: dict[str, Any]
    ) -> RasterDEM | None:
        return cls(spec, vertical_datum, storage_options)

    def describe(self) -> str:
        return redact(self.url)

    @contextmanager
    def reader(self) -> Iterator[Reader]:
        """The rasters this worker holds open for the DEM as it is now (its files' versions
        in the key: a changed file is opened anew, never read through an old handle)."""
        from sarlo_dask.driver.worker_state import worker_state

        key = (self.url, self.vertical_datum, _text(self.storage_options), _text(self.versions()))
        held = worker_state().memo("dem", key, lambda: HeldDem(self), size=2, close=True)
        with held.lock:
            if (dem := held.dem) is not None:
                yield lambda box: read_window(dem, box)
                return
        # dropped from the table (closed) after it was handed out: this task opens its own
        with open_dem(self.url, self.vertical_datum, self.storage_options) as own:
            yield lambda box: read_window(own, box)

    def versions(self) -> dict[str, str]:
        return dem_versions(self.url, self.storage_options)

    def check(self) -> None:
        probe_dem(self.url, self.vertical_datum, self.storage_options)


class HeldDem:
    """A raster DEM's files held open by a worker between its scenes (each scene reads
    several windows; the next scene reads the same files): one reader at a time, closed when
    the worker's table drops it or the worker goes."""

    def __init__(self, source: RasterDEM) -> None:
        from contextlib import ExitStack

        self.lock = threading.Lock()
        self.stack = ExitStack()
        opened = open_dem(source.url, source.vertical_datum, source.storage_options)
        self.dem: OpenDem | None = self.stack.enter_context(opened)

    def close(self) -> None:
        with self.lock:
            self.dem = None
            self.stack.close()


def _text(mapping: dict[str, Any]) -> str:
    return json.dumps(mapping, sort_keys=True, default=str)


ENTRY_POINTS = "sarlo_dask.height_sources"
"""the entry point group an installed package declares its height source classes in"""
KINDS: Registry[HeightSource] = Registry(HeightSource, ENTRY_POINTS, (RasterDEM,))
register = KINDS.register
"""make `height_source` try a kind before the raster DEM (a class decorator)"""


def height_source(
    spec: str, vertical_datum: str = "auto", storage_options: dict[str, Any] | None = None
) -> HeightSource:
    """The source `spec` names: a kind registered or installed that claims it, else a raster
    DEM at that URL."""
    for kind in KINDS.kinds():
        source = kind.parse(spec, vertical_datum, dict(storage_options or {}))
        if source is not None:
            return source
    raise AssertionError("the raster DEM takes any spec")  # pragma: no cover


def configured(cfg: Any) -> HeightSource | None:
    """The height source of a StandardizeConfig (None: the constant height)."""
    if cfg.dem is None:
        return None
    options = cfg.storage.for_url(cfg.dem, cfg.dem_storage_options)
    return height_source(cfg.dem, cfg.dem_vertical_datum, options)
