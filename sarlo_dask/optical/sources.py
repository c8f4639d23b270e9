"""From a spec to an optical source: the built-in kinds (XYZ over HTTP, a folder of XYZ
tiles, a GeoTIFF: a module each), kinds registered in this process, and kinds an installed
package declares in the `sarlo_dask.optical_sources` entry point group (`optical.source`
says what a kind implements).
"""

from __future__ import annotations

from typing import Any

from sarlo_dask.errors import redact
from sarlo_dask.optical.folder_tiles import FolderTiles as FolderTiles
from sarlo_dask.optical.geotiff import GeoTIFFSource as GeoTIFFSource
from sarlo_dask.optical.http_tiles import HTTPTiles as HTTPTiles
from sarlo_dask.optical.source import OpticalSource as OpticalSource
from sarlo_dask.optical.source import TileFailure as TileFailure
from sarlo_dask.optical.source import XYZSource as XYZSource
from sarlo_dask.registry import Registry
from sarlo_dask.store import canonical_spec

BUILT_IN: tuple[type[OpticalSource], ...] = (HTTPTiles, GeoTIFFSource, FolderTiles)
ENTRY_POINTS = "sarlo_dask.optical_sources"
"""the entry point group an installed package declares its optical source classes in"""
KINDS: Registry[OpticalSource] = Registry(OpticalSource, ENTRY_POINTS, BUILT_IN)
register = KINDS.register
"""make `source_from_spec` try a kind before the built-in ones (a class decorator)"""


def canonical_source(spec: str) -> str:
    """One spelling of a spec, for digests: a spec a registered or installed kind claims as
    given (its kind knows what it names), else the paths of the built-in kinds' specs
    absolute (store.canonical_spec)."""
    for kind in KINDS.added():
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
    for kind in KINDS.kinds():
        source = kind.parse(spec, zoom, cache_dir=cache_dir, **options)
        if source is not None:
            return source
    more = [k.kind for k in KINDS.added()]
    nor = f", nor a spec of {', '.join(more)}" if more else ""
    raise ValueError(
        f"optical source {redact(spec)!r}: not an http(s) XYZ template, a GeoTIFF or a folder "
        f"of XYZ tiles{nor}"
    )
