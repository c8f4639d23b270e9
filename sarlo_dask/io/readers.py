"""Scene readers: a declared seam for products that are not SICD NITF files.

A SICD NITF (Umbra, Capella, ICEYE, NGA: the SICD standard's own container) is read by the
built-in reader (sarlo_dask.geometry.sicd, through sarpy) whenever no other kind claims a URL.
Another container (a vendor's, a converted archive) is one class: a `SceneReader` gives the scene's
SICD metadata (sarpy's SICDType, from its XML or from a conversion) and any block of its rows;
everything after that (the checks, the resampling, the geometry, the tiles) is the same.
Kinds are registered in the process (`register`) or declared by installed packages in the
`sarlo_dask.scene_readers` entry point group; a kind claims the URLs ending in its `suffixes`.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from sarlo_dask.registry import Registry
from sarlo_dask.store import is_http

GROUP = "sarlo_dask.scene_readers"
NITF_SUFFIXES = (".nitf", ".ntf")
"""the file name endings of the built-in reader's SICD NITF files"""


class SceneReader(ABC):
    """A kind of scene file. Instances travel to the workers (pickled): keep them small."""

    kind: ClassVar[str]
    suffixes: ClassVar[tuple[str, ...]]
    """file name endings it claims (lower case, e.g. '.sicd.npz'); a folder given as input
    yields its files with these endings"""

    @abstractmethod
    def sicd(self, url: str, storage_options: dict[str, Any] | None) -> Any:
        """The scene's SICD metadata (sarpy SICDType; sarlo_dask.geometry.sicd.sicd_from_xml parses
        XML safely). Raise sarlo_dask.errors.SceneError(url, why) if it cannot be read."""

    @abstractmethod
    def rows(
        self, url: str, storage_options: dict[str, Any] | None, r0: int, r1: int
    ) -> npt.NDArray[np.complex64]:
        """SICD rows r0:r1 (range lines) with every column, (r1 - r0, NumCols) complex64.
        Called in tasks, a block of `chunk_range` rows at a time."""


KINDS: Registry[SceneReader] = Registry(SceneReader, GROUP, ())
register = KINDS.register


def _claimed(name: str) -> tuple[str, type[SceneReader]] | None:
    """The longest suffix an added kind claims that the file `name` ends with, and that
    kind (None: none claims it)."""
    low = name.lower()
    claims = [(e, k) for k in KINDS.kinds() for e in k.suffixes if low.endswith(e)]
    return max(claims, key=lambda c: len(c[0]), default=None)


def reader_for(url: str) -> SceneReader | None:
    """The added kind that claims `url` (by its name, the part before a query; the longest
    suffix chooses), or None: the built-in SICD NITF reader reads it."""
    claimed = _claimed(url.split("?", 1)[0])
    return None if claimed is None else claimed[1]()


_KEY_BAD = re.compile(r"[^A-Za-z0-9_-]+")


def sanitize_key(text: str) -> str:
    """Letters, digits, `_` and `-` only (webdataset splits keys at dots)."""
    key = _KEY_BAD.sub("_", text).strip("_")
    return key or "scene"


def scene_id_from_url(url: str) -> str:
    """The file name without its extension, as a key; an http(s) URL's query (a token, a
    signature) is no part of it."""
    if is_http(url):
        url = url.split("?", 1)[0].split("#", 1)[0]
    name = url.rstrip("/").rsplit("/", 1)[-1]
    for ext in (*NITF_SUFFIXES, *(e.upper() for e in NITF_SUFFIXES)):  # as ever: exact case
        if name.endswith(ext):
            return sanitize_key(name[: -len(ext)])
    if (claimed := _claimed(name)) is not None:  # another reader's
        return sanitize_key(name[: -len(claimed[0])])
    return sanitize_key(name)


def scene_suffixes() -> tuple[str, ...]:
    """The file name endings a folder of scenes yields: the NITF's and the added kinds'."""
    return NITF_SUFFIXES + tuple(s for kind in KINDS.kinds() for s in kind.suffixes)
