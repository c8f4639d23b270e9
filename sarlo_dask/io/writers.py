"""The files a release holds beside its WebDataset shards: a declared seam.

The shards hold the samples (release.publish.write_shard). Once every shard of a release is
committed, the release's other files are made from the whole of it: index.parquet and
stats.json (always, built in) and those of each `SampleWriter` that `release.writers` names
(a STAC catalogue, a Croissant description, a list for another loader). A writer is a pure
function of the release (`ReleaseView`) to named bytes; the build writes them into the
release's generation, the manifest lists each with its size and sha256, and `sarlo verify`
checks them as it checks the shards. Kinds are registered in the process (`register`) or
declared by installed packages in the `sarlo_dask.sample_writers` entry point group."""

from __future__ import annotations

import functools
import hashlib
import posixpath
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from sarlo_dask.dataset import MANIFEST, SPLITS, sample_ranges, shard_marker
from sarlo_dask.io.generations import STATS
from sarlo_dask.io.index import INDEX
from sarlo_dask.registry import Registry
from sarlo_dask.store import PARTIAL, Store

GROUP = "sarlo_dask.sample_writers"
RESERVED = (INDEX, STATS, *SPLITS)
"""names in a generation that are the built-in files' and the shards' folders"""


@dataclass(frozen=True)
class ReleaseView:
    """What a writer is given: the released samples, the committed shards, the manifest."""

    rows: Sequence[Mapping[str, Any]]
    """one per sample, as index.parquet holds it (key, split, shard, scene, pass, footprint,
    caption, label, members with their offsets in the shard, ...)"""
    shards: Mapping[str, Mapping[str, Any]]
    """shard path (relative to the generation) -> its commit marker (sha256, bytes, keys)"""
    manifest: Mapping[str, Any]
    """the release's manifest as far as it is known (counts, splits, settings digests)"""
    read: Callable[[str, str], bytes] | None = None
    """the bytes of one member of a sample: (key, member name after `KEY.`), checked against
    its sha256 in its shard's marker (None: the writer is shown no pixels)"""


class SampleWriter(ABC):
    """A kind of release file. `kind` is the name `release.writers` gives it."""

    kind: ClassVar[str]
    version: ClassVar[str] = ""
    """what identifies its output (default: its package's version): in the release's digest"""

    @abstractmethod
    def files(self, release: ReleaseView) -> dict[str, bytes]:
        """The files to add: a path relative to the generation (forward slashes) -> bytes.
        The same release must give the same bytes (a re-run compares them)."""


KINDS: Registry[SampleWriter] = Registry(SampleWriter, GROUP, ())
register = KINDS.register


def known() -> list[str]:
    """The names of every kind this process can write."""
    return sorted({k.kind for k in KINDS.kinds()})


def writer(name: str) -> SampleWriter:
    """The writer of kind `name`; a ValueError naming the known kinds if there is none."""
    return kind_of(name)()


def kind_of(name: str) -> type[SampleWriter]:
    """The class of the writer kind `name` (a ValueError naming the known kinds)."""
    for kind in KINDS.kinds():
        if kind.kind == name:
            return kind
    have = ", ".join(known()) or "none installed"
    raise ValueError(f"no sample writer '{name}' (known: {have}; see the README's seams)")


def checked_name(kind: str, name: str) -> str:
    """`name` if it is a plain relative path in the generation that no file of the release's
    own may have (case aside: some disks ignore it), else a ValueError."""
    parts = name.split("/")
    plain = (
        posixpath.normpath(name) == name
        and not name.startswith("/")
        and all(p not in (".", "..") for p in parts)
        and name.isprintable()
        and "\\" not in name
    )
    low = name.lower()
    own = (
        parts[0].lower() in RESERVED
        or low == MANIFEST
        or low.endswith((".tar", shard_marker(".tar")))
        or PARTIAL in low
    )
    if not plain or own:
        raise ValueError(f"sample writer '{kind}' names {name!r}: not a free relative path")
    return name


class WriterFailed(Exception):
    """A sample writer raised: which one, and why."""

    def __init__(self, kind: str, exc: BaseException) -> None:
        super().__init__(f"sample writer '{kind}': {type(exc).__name__}: {exc}")
        self.kind = kind


def render(names: Sequence[str], release: ReleaseView) -> dict[str, tuple[str, bytes]]:
    """Every file the writers `names` make of `release`: path -> (writer, bytes)."""
    out: dict[str, tuple[str, bytes]] = {}
    for name in names:
        kind = writer(name)  # an unknown name: a ValueError saying which are known
        try:
            made = kind.files(release)
        except Exception as exc:
            raise WriterFailed(name, exc) from exc
        for path, data in sorted(made.items()):
            if checked_name(name, path) in out:
                raise ValueError(f"sample writers '{out[path][0]}' and '{name}' both write {path}")
            out[path] = (name, bytes(data))
    return out


def versions(names: Sequence[str]) -> list[str]:
    """`name@version` of each writer: its class's `version`, else its package's (a writer
    upgraded in place makes another generation, never other files in the published one)."""
    out = []
    for name in names:
        kind = kind_of(name)
        version = kind.version or _package_version(kind) or "0"
        out.append(f"{name}@{version}")
    return out


@functools.cache
def _package_version(kind: type) -> str | None:
    from importlib.metadata import entry_points

    for ep in entry_points(group=GROUP):
        if ep.value == f"{kind.__module__}:{kind.__qualname__}" and ep.dist is not None:
            return str(ep.dist.version)
    return None


def entry(path: str, kind: str, data: bytes) -> dict[str, Any]:
    """The manifest's record of one written file."""
    return {
        "path": path,
        "writer": kind,
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
    }


def write_files(out: Store, names: Sequence[str], view: ReleaseView) -> list[dict[str, Any]]:
    """The files of the writers `names`, written into {out} (the release's generation;
    unless they hold these bytes already); their manifest entries."""
    written = []
    for path, (kind, data) in sorted(render(names, view).items()):
        out.update_bytes(out.path(path), data)
        written.append(entry(path, kind, data))
    return written


def member_reader(
    out: Store, shards: Mapping[str, Mapping[str, Any]]
) -> Callable[[str, str], bytes]:
    """`ReleaseView.read` over the committed shards of the generation `out`: the member read
    by its byte range where its shard's marker puts it, its sha256 checked (dataset's range
    reader: a ShardError if it is not those bytes)."""
    where = {key: (shard, at) for shard, m in shards.items() for key, at in m["members"].items()}

    def read(key: str, name: str) -> bytes:
        shard, at = where[key]
        offset, size, digest = at[name]
        member = {"name": name, "offset": int(offset), "size": int(size), "sha256": digest}
        item = {"url": out.path(shard), "key": key, "members": [member]}
        return bytes(next(sample_ranges(iter([item]), out.options))[name])

    return read
