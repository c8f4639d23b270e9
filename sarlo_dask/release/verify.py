"""`sarlo verify`: a release checked against its manifest, as restic's and borg's `check`
read every pack: each shard's size and sha256, its commit marker, index.parquet's rows
against the members the shards really hold, the counts; `deep` also decodes every member.

Each shard is read once, in large blocks, its SHA-256 and its tar headers taken from the
same bytes (`TarWalk`); shards are read in parallel threads (hashlib releases the GIL).
Files a killed build left half-written (`.partial-` names) and generations the manifest does
not name are no part of the release and are not looked at.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from sarlo_dask.dataset import MANIFEST, SPLITS, read_manifest, root_of, shard_marker
from sarlo_dask.errors import exception_line
from sarlo_dask.io.index import INDEX
from sarlo_dask.store import PARTIAL, Store, is_local

BLOCK = tarfile.BLOCKSIZE
READ = 4 << 20
"""bytes per read: large reads keep the per-call cost far below the hash's"""
STATS = "stats.json"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a release: MISSING, MISMATCH, EXTRA, INDEX, COUNT, UNDECODABLE."""

    kind: str
    path: str
    """relative to {out}"""
    reason: str

    def line(self) -> str:
        return f"{self.kind} {self.path}: {self.reason}"


class TarWalk:
    """The regular members of a tar (name -> (data offset, size)) from its bytes fed in
    order, in chunks of any size: only the 512-byte headers are looked at."""

    def __init__(self) -> None:
        self.members: dict[str, tuple[int, int]] = {}
        self.error = ""
        self._pos = self._next = 0
        self._header = b""
        self._ended = False

    def feed(self, chunk: memoryview | bytes) -> None:
        base = self._pos
        self._pos += len(chunk)
        while not self._ended and self._next < self._pos:
            have = len(self._header)
            start = self._next + have - base
            self._header += bytes(chunk[start : start + BLOCK - have])
            if len(self._header) < BLOCK:
                return  # the header's rest comes with the next chunk
            self._member(self._header)
            self._header = b""

    def _member(self, header: bytes) -> None:
        if header == bytes(BLOCK):  # the end-of-archive blocks
            self._ended = True
            return
        try:
            info = tarfile.TarInfo.frombuf(header, "utf-8", "surrogateescape")
        except tarfile.HeaderError as exc:
            self.error, self._ended = f"no tar header at byte {self._next} ({exc})", True
            return
        data = self._next + BLOCK
        if info.isreg():
            self.members[info.name] = (data, info.size)
        self._next = data + -(-info.size // BLOCK) * BLOCK

    def keys(self) -> set[str]:
        return {name.split(".", 1)[0] for name in self.members}


@dataclass
class ShardRead:
    """What one read of a shard found: its size, sha256 and members."""

    size: int
    sha256: str
    walk: TarWalk


def read_shard(fs: Any, path: str) -> ShardRead:
    """Read a shard once: its size, sha256 and tar members."""
    sha, walk, size = hashlib.sha256(), TarWalk(), 0
    buf = bytearray(READ)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) if is_local(fs) else fs.open(path, "rb") as f:
        while n := f.readinto(buf):
            sha.update(view[:n])
            walk.feed(view[:n])
            size += n
    return ShardRead(size, sha.hexdigest(), walk)


def decode_member(name: str, data: bytes) -> None:
    """Decode one member as a reader would (npy, json, png/jpg, xml); raises if it cannot."""
    kind = name.rsplit(".", 1)[-1]
    if kind == "npy":
        import numpy as np

        np.load(io.BytesIO(data), allow_pickle=False)
    elif kind == "json":
        json.loads(data)
    elif kind in ("png", "jpg", "jpeg"):
        from PIL import Image

        with Image.open(io.BytesIO(data)) as im:
            im.load()
    elif kind == "xml":
        from defusedxml import ElementTree

        ElementTree.fromstring(data)


def _undecodable(fs: Any, path: str) -> list[str]:
    """`member: why` for each member of a shard that does not decode."""
    bad = []
    with fs.open(path, "rb") as f, tarfile.open(fileobj=f, mode="r|") as tar:
        for m in tar:
            data = tar.extractfile(m)
            if data is None:
                continue
            try:
                decode_member(m.name, data.read())
            except Exception as exc:
                bad.append(f"{m.name}: {exception_line(exc)}")
    return bad


@dataclass
class Report:
    """What `verify_release` checked and found."""

    problems: list[Problem] = field(default_factory=list)
    shards: int = 0
    samples: int = 0
    bytes: int = 0
    seconds: float = 0.0


def _listing(fs: Any, root: str, generation: str) -> dict[str, int]:
    """The release's files (relative to its root) and their sizes, without partial files."""
    fs.invalidate_cache()
    tops = [root] if generation else [f"{root}/{s}" for s in SPLITS]
    found: dict[str, int] = {}
    for top in tops:
        if fs.exists(top):
            for p, info in fs.find(top, detail=True).items():
                found[p[len(root) :].lstrip("/")] = int(info["size"])
    if not generation:
        for name in (INDEX, STATS):
            if fs.exists(f"{root}/{name}"):
                found[name] = int(fs.size(f"{root}/{name}"))
    return {p: n for p, n in found.items() if PARTIAL not in p}


def _check_shard(
    fs: Any, root: str, entry: Mapping[str, Any], files: Mapping[str, int], deep: bool
) -> tuple[list[tuple[str, str, str]], ShardRead | None]:
    """Problems (kind, path relative to the release root, reason) of one listed shard and
    its marker, and what reading it found (None: not read)."""
    shard, problems = entry["shard"], []
    marker = shard_marker(shard)
    if marker not in files:
        problems.append(("MISSING", marker, "the shard's commit marker"))
    else:
        with fs.open(f"{root}/{marker}", "rb") as f:
            m = json.loads(f.read())
        if (m.get("sha256"), m.get("bytes")) != (entry["sha256"], entry["bytes"]):
            problems.append(("MISMATCH", marker, "sha256 or bytes not the manifest's"))
    if shard not in files:
        problems.append(("MISSING", shard, f"listed in the manifest ({entry['bytes']} bytes)"))
        return problems, None
    if files[shard] != entry["bytes"]:
        why = f"{files[shard]} bytes, the manifest lists {entry['bytes']}"
        return [*problems, ("MISMATCH", shard, why)], None
    got = read_shard(fs, f"{root}/{shard}")
    if got.sha256 != entry["sha256"]:
        why = f"sha256 {got.sha256[:16]}..., the manifest lists {entry['sha256'][:16]}..."
        return [*problems, ("MISMATCH", shard, why)], None
    if got.walk.error or len(got.walk.keys()) != entry["samples"]:
        why = (
            got.walk.error
            or f"{len(got.walk.keys())} samples, the manifest lists {entry['samples']}"
        )
        problems.append(("COUNT", shard, why))
    if deep:
        problems += [("UNDECODABLE", shard, why) for why in _undecodable(fs, f"{root}/{shard}")]
    return problems, got


Members = dict[str, dict[str, tuple[int, int]]]
"""shard -> {key.member: (data offset, size)}"""


def _read_index(
    fs: Any, root: str, manifest: Mapping[str, Any], files: Mapping[str, int]
) -> tuple[list[tuple[str, str, str]], Members | None]:
    """index.parquet against the manifest's entry; the members its rows locate (None: not
    read). Read before any thread starts: pyarrow read after Python threads have run can
    abort the interpreter at its exit (pyarrow 26)."""
    import pyarrow.parquet as pq

    entry = manifest.get("index")
    if not entry:
        return [], None
    path = entry["path"]
    data, problems = _listed_file(fs, root, entry, files, "the release's index")
    if data is None:
        return problems, None
    table = pq.read_table(io.BytesIO(data), columns=["key", "shard", "members"], use_threads=False)
    rows = table.to_pylist()
    problems = []
    if len(rows) != entry["rows"] or len(rows) != manifest["samples"]:
        n, want = len(rows), entry["rows"]
        why = f"{n} rows, the manifest lists {want} ({manifest['samples']} samples)"
        problems.append(("COUNT", path, why))
    indexed: Members = {}
    for r in rows:
        for m in r["members"]:
            where = (m["offset"], m["size"])
            indexed.setdefault(r["shard"], {})[f"{r['key']}.{m['name']}"] = where
    return problems, indexed


def _index_against_shards(
    indexed: Members, reads: Mapping[str, ShardRead | None]
) -> list[tuple[str, str, str]]:
    """An INDEX problem for each shard whose members are not where the index says."""
    out = []
    for shard, got in reads.items():
        if got is not None and indexed.get(shard, {}) != got.walk.members:
            why = f"rows disagree with the members of {shard} (offsets, sizes or names)"
            out.append(("INDEX", INDEX, why))
    return out


def _listed_file(
    fs: Any, root: str, entry: Mapping[str, Any], files: Mapping[str, int], what: str
) -> tuple[bytes | None, list[tuple[str, str, str]]]:
    """A file the manifest lists (`entry`: path, bytes, sha256) and its bytes, or None and
    why it is not what the manifest lists (MISSING, MISMATCH); `what`: what it is."""
    path = entry["path"]
    if path not in files:
        return None, [("MISSING", path, what)]
    with fs.open(f"{root}/{path}", "rb") as f:
        data = f.read()
    if (len(data), hashlib.sha256(data).hexdigest()) != (entry["bytes"], entry["sha256"]):
        return None, [("MISMATCH", path, "size or sha256 not the manifest's")]
    return data, []


def verify_release(out: Store, deep: bool = False, threads: int = 4) -> Report:
    """Check the current release of {out} against its manifest (see the module's text)."""
    t0 = time.perf_counter()
    report = Report()
    manifest = read_manifest(out.url, out.options)
    if manifest is None:
        report.problems.append(Problem("MISSING", MANIFEST, "no release: a build writes it last"))
        return report
    generation = manifest.get("generation") or ""
    fs, root = out.filesystem(root_of(out.url, manifest))
    files = _listing(fs, root, generation)
    listed = manifest["shards"]
    found, indexed = _read_index(fs, root, manifest, files)
    with ThreadPoolExecutor(threads) as pool:
        checked = list(pool.map(lambda e: _check_shard(fs, root, e, files, deep), listed))
    found += [p for problems, _ in checked for p in problems]
    reads = {e["shard"]: got for e, (_, got) in zip(listed, checked, strict=True)}
    if indexed is not None:
        found += _index_against_shards(indexed, reads)
    if sum(e["samples"] for e in listed) != manifest["samples"]:
        found.append(("COUNT", MANIFEST, "its shards' samples do not add up to its samples"))
    known = {e["shard"] for e in listed} | {shard_marker(e["shard"]) for e in listed}
    known |= {INDEX, STATS}
    for entry in manifest.get("files", []):  # the sample writers' (sarlo_dask.io.writers)
        why = f"written by the sample writer {entry['writer']}"
        found += _listed_file(fs, root, entry, files, why)[1]
        known.add(entry["path"])
    found += [("EXTRA", p, "not part of the release") for p in sorted(set(files) - known)]
    for kind, path, why in found:
        where = path if path == MANIFEST or not generation else f"{generation}/{path}"
        report.problems.append(Problem(kind, where, why))
    report.shards, report.samples = len(listed), manifest["samples"]
    report.bytes = sum(r.size for r in reads.values() if r is not None)
    report.seconds = time.perf_counter() - t0
    return report
