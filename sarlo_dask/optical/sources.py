"""From a spec to an optical source: the built-in kinds (XYZ over HTTP, a folder of XYZ
tiles, a GeoTIFF: a module each), kinds registered in this process, and kinds an installed
package declares in the `sarlo_dask.optical_sources` entry point group (`optical.source`
says what a kind implements).
"""

from __future__ import annotations

import functools
from typing import Any

from sarlo_dask.errors import redact
from sarlo_dask.optical.folder_tiles import FolderTiles as FolderTiles
from sarlo_dask.optical.geotiff import GeoTIFFSource as GeoTIFFSource
from sarlo_dask.optical.http_tiles import HTTPTiles as HTTPTiles
from sarlo_dask.optical.source import OpticalSource as OpticalSource
from sarlo_dask.optical.source import TileFailure as TileFailure
from sarlo_dask.optical.source import XYZSource as XYZSource
from sarlo_dask.store import canonical_spec

_REGISTERED: list[type[OpticalSource]] = []
BUILT_IN: tuple[type[OpticalSource], ...] = (HTTPTiles, GeoTIFFSource, FolderTiles)
ENTRY_POINTS = "sarlo_dask.optical_sources"
"""the entry point group an installed package declares its optical source classes in"""


def register(kind: type[OpticalSource]) -> type[OpticalSource]:
    """Make `source_from_spec` try `kind` (before the built-in kinds); a class decorator.
    In a build, the workers get the source object itself, not the registry."""
    if not (isinstance(kind, type) and issubclass(kind, OpticalSource)):
        raise TypeError(f"{kind!r} is not an OpticalSource class")
    if kind not in _REGISTERED:
        _REGISTERED.append(kind)
    return kind


def kinds() -> list[type[OpticalSource]]:
    """The kinds `source_from_spec` tries, in order: registered, installed (entry points),
    built-in."""
    return list(dict.fromkeys([*_REGISTERED, *_installed(), *BUILT_IN]))


@functools.cache
def _installed() -> tuple[type[OpticalSource], ...]:
    """The kinds installed packages declare (read once per process: a tile task asks)."""
    from importlib.metadata import entry_points

    found = []
    for ep in sorted(entry_points(group=ENTRY_POINTS), key=lambda e: e.name):
        kind = ep.load()
        if not (isinstance(kind, type) and issubclass(kind, OpticalSource)):
            raise TypeError(f"entry point {ep.name} = {ep.value}: not an OpticalSource class")
        found.append(kind)
    return tuple(found)


def canonical_source(spec: str) -> str:
    """One spelling of a spec, for digests: a spec a registered or installed kind claims as
    given (its kind knows what it names), else the paths of the built-in kinds' specs
    absolute (store.canonical_spec)."""
    for kind in kinds():
        if kind in BUILT_IN:
            continue
        try:
            if kind.parse(spec, 0) is not None:
                return spec
        except ValueError:  # its own, and wrong: the build says why
            return spec
    return canonical_spec(spec)


def source_from_spec(
    spec: str, zoom: int = 19, cache_dir: str = "", **options: Any
) -> OpticalSource:
    """The source a spec names: an http(s) template, a .tif/.tiff path, a folder of XYZ tiles,
    what `describe()` records in meta.json (`folder:PATH`, `geotiff:PATH`, a redacted
    template), or a spec a registered or installed kind claims (`optical.source`).

    `options`: HTTPTiles' timeout, retries, backoff, max_workers, rate, cache_options and
    fail_fast; each kind takes what applies to it.
    """
    every = kinds()
    for kind in every:
        source = kind.parse(spec, zoom, cache_dir=cache_dir, **options)
        if source is not None:
            return source
    more = [k.kind for k in every if k not in BUILT_IN]
    nor = f", nor a spec of {', '.join(more)}" if more else ""
    raise ValueError(
        f"optical source {redact(spec)!r}: not an http(s) XYZ template, a GeoTIFF or a folder "
        f"of XYZ tiles{nor}"
    )
