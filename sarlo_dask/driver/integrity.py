"""Content digests of {work}'s checkpoint units, recorded at commit and verified on reuse.

A unit's marker records a sha256 per piece: a scene store's marker (scenes/ID.done.json) one
per Zarr object (chunks read raw through the store's filesystem, never decoded, and the
zarr.json metadata holding the attributes); a tile's meta.json one per other member, and the
scene's tiles marker one per kept tile's meta.json; a caption record and a cached XYZ tile
their own. Verification compares what is there with what was recorded: each piece missing or
different is a Damage, whose unit is then rebuilt from its input (`discard` removes it, the
next pass of the build makes it again). Nothing here decides when to verify: the stages do,
where they reuse a unit.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from sarlo_dask.errors import redact
from sarlo_dask.store import PARTIAL, Store, json_bytes

UnitKind = Literal["scene", "tile", "caption", "xyz"]

METADATA = "zarr.json"
"""the store's root metadata object: its attributes and consolidated metadata"""
BATCH = 16
"""store objects read at once while hashing (bounds memory: 16 chunks of a few MB)"""
SELF = "sha256"
"""the field of a self-digested JSON record (a caption record) holding its digest"""

CHECKS = [True]
"""verification on (the benchmark's internal switch: bench/bench_verify_reuse.py)"""


def sha256(data: bytes | bytearray | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Damage:
    """A damaged or missing piece of a unit: `path` relative to {work}."""

    path: str
    reason: str
    kind: UnitKind
    scene_id: str
    key: str = ""

    @property
    def unit(self) -> str:
        if self.kind == "scene":
            return f"scene {self.scene_id}"
        if self.kind == "xyz":
            return f"cached XYZ tile {self.key}"
        return f"{self.kind} {self.scene_id}/{self.key}"

    def line(self) -> str:
        return f"DAMAGED {redact(self.path)}: {self.reason}; rebuilding {self.unit}"


class DamagedError(Exception):
    """Damage found while reading a unit inside a task (a shard's samples): the task stops,
    the driver rebuilds the units and tries again."""

    def __init__(self, damage: list[Damage]) -> None:
        self.damage = damage
        super().__init__("; ".join(d.line() for d in damage))

    def __reduce__(self) -> tuple[type[DamagedError], tuple[list[Damage]]]:
        return (DamagedError, (self.damage,))


def compare(recorded: Mapping[str, str], found: Mapping[str, str | None]) -> list[tuple[str, str]]:
    """(name, reason) of each recorded piece not found (None) or found with another digest."""
    out = []
    for name in sorted(recorded):
        got = found.get(name)
        if got is None:
            out.append((name, "missing"))
        elif got != recorded[name]:
            out.append((name, "sha256 differs from the one recorded at commit"))
    return out


def one_per_unit(damage: Iterable[Damage]) -> list[Damage]:
    """The first damaged piece of each unit, its reason counting the others: one line a unit."""
    units: dict[tuple[str, str, str], list[Damage]] = {}
    for d in damage:
        units.setdefault((d.kind, d.scene_id, d.key), []).append(d)
    out = []
    for found in units.values():
        first, more = found[0], len(found) - 1
        reason = f"{first.reason} (and {more} more pieces)" if more else first.reason
        out.append(Damage(first.path, reason, first.kind, first.scene_id, first.key))
    return out


def digest_files(fs: Any, paths: list[str]) -> dict[str, str | None]:
    """sha256 of each file's raw bytes (None: missing or unreadable), BATCH files a request."""
    out: dict[str, str | None] = {}
    for i in range(0, len(paths), BATCH):
        got = fs.cat(paths[i : i + BATCH], on_error="return")
        for p in paths[i : i + BATCH]:
            data = got.get(p)
            out[p] = sha256(data) if isinstance(data, bytes | bytearray) else None
    return out


# scene stores ---------------------------------------------------------------------------


def store_digests(work: Store, scene_id: str, *after: Any) -> dict[str, str]:
    """sha256 of every object of the scene's store, by path inside it (a task, run once its
    write is done: `after` is that write's result)."""
    del after
    fs, root = work.filesystem(work.scene_store(scene_id))
    fs.invalidate_cache()
    paths = sorted(p for p in fs.find(root) if PARTIAL not in p)
    return {p[len(root) :].lstrip("/"): d for p, d in digest_files(fs, paths).items() if d}


def verify_store(
    work: Store, scene_id: str, marker: Mapping[str, Any], chunks: bool
) -> list[Damage]:
    """The scene store's damage against its marker's digests ({}: no marker): its root
    metadata only (the attributes, and the consolidated metadata every reader opens the
    store by), or every object (`chunks`: before tiles are read from it)."""
    if not CHECKS[0]:
        return []
    base = f"scenes/{scene_id}.zarr"
    recorded = marker.get("digests")
    if not isinstance(recorded, dict) or not recorded:
        why = "missing" if not marker else "it records no digests (made by an earlier version)"
        return [Damage(f"scenes/{scene_id}.done.json", why, "scene", scene_id)]
    if not chunks:
        recorded = {k: v for k, v in recorded.items() if k == METADATA}
    fs, root = work.filesystem(work.scene_store(scene_id))
    found = digest_files(fs, [f"{root}/{k}" for k in sorted(recorded)])
    bad = compare(recorded, {k: found[f"{root}/{k}"] for k in recorded})
    return one_per_unit(Damage(f"{base}/{k}", why, "scene", scene_id) for k, why in bad)


# tiles ----------------------------------------------------------------------------------


def tile_damage(scene_id: str, key: str, member: str, reason: str) -> Damage:
    return Damage(f"tiles/{scene_id}/{key}.{member}", reason, "tile", scene_id, key)


def verify_meta(
    scene_id: str, key: str, digest: str | None, recorded: Mapping[str, str] | None
) -> list[Damage]:
    """A tile's meta.json, by the sha256 of its bytes (None: missing), against the tiles
    marker's digest of it (`recorded`: the marker's `tiles`; None: no marker to check with)."""
    if not CHECKS[0] or recorded is None or key not in recorded:
        return []
    if digest is None:
        return [tile_damage(scene_id, key, "meta.json", "missing")]
    if digest != recorded[key]:
        why = "sha256 differs from the tiles marker's"
        return [tile_damage(scene_id, key, "meta.json", why)]
    return []


def missing_tiles(work: Store, scene_id: str, recorded: Mapping[str, str] | None) -> list[Damage]:
    """The kept tiles of the tiles marker's `recorded` whose meta.json is gone (one listing):
    what a complete scene's skipped tile plan checks."""
    if not CHECKS[0] or not recorded:
        return []
    fs, root = work.filesystem(work.tile_dir(scene_id))
    fs.invalidate_cache()
    names = {p.rsplit("/", 1)[-1] for p in fs.ls(root, detail=False)} if fs.exists(root) else set()
    return [
        tile_damage(scene_id, k, "meta.json", "missing")
        for k in sorted(recorded)
        if f"{k}.meta.json" not in names
    ]


def verify_member(
    scene_id: str, key: str, member: str, data: bytes | memoryview, meta: Mapping[str, Any]
) -> list[Damage]:
    """One member of a tile (sar.npy, ...) against the digest its meta.json records."""
    if not CHECKS[0]:
        return []
    recorded = (meta.get("digests") or {}).get(f"{key}.{member}")
    if recorded is None:
        return [tile_damage(scene_id, key, member, "its meta.json records no digest of it")]
    if sha256(data) != recorded:
        return [tile_damage(scene_id, key, member, "sha256 differs from its meta.json's")]
    return []


def verify_tile_file(
    work: Store, scene_id: str, key: str, member: str, meta: Mapping[str, Any]
) -> list[Damage]:
    """`verify_member` of a member read from {work} (missing: damage too)."""
    fs, path = work.filesystem(work.tile_member(scene_id, key, member))
    try:
        data = fs.cat_file(path)
    except FileNotFoundError:
        return [tile_damage(scene_id, key, member, "missing")]
    return verify_member(scene_id, key, member, data, meta)


# self-digested records (caption records) --------------------------------------------------


def sealed(record: dict[str, Any]) -> dict[str, Any]:
    """`record` with its own digest (SELF) over its other fields."""
    body = {k: v for k, v in record.items() if k != SELF}
    return {**body, SELF: sha256(json_bytes(body))}


def unsealed(data: bytes) -> tuple[dict[str, Any] | None, str]:
    """(the record, "") when its digest verifies, else (None, why)."""
    try:
        record = json.loads(data)
    except ValueError:
        return None, "not valid JSON"
    if not isinstance(record, dict) or SELF not in record:
        return None, "it records no digest of itself"
    if CHECKS[0] and sealed(record)[SELF] != record[SELF]:
        return None, "sha256 differs from the one it records"
    return record, ""


# healing --------------------------------------------------------------------------------


def discard(work: Store, damage: Iterable[Damage]) -> list[str]:
    """Remove each damaged unit's marker (and what would be taken for it), so that the next
    pass rebuilds it from its input; one DAMAGED line per unit."""
    lines = []
    for d in one_per_unit(damage):
        lines.append(d.line())
        if d.kind == "scene":
            work.remove(work.scene_marker(d.scene_id))  # the store is rewritten whole
        elif d.kind == "tile":
            work.remove(work.tiles_marker(d.scene_id))
            fs, root = work.filesystem(work.tile_dir(d.scene_id))
            work.remove(work.tile_member(d.scene_id, d.key, "meta.json"))  # its marker first
            for p in fs.glob(f"{root}/{d.key}.*"):
                fs.rm(p)
        elif d.kind == "caption":
            work.remove(work.caption(d.scene_id, d.key))
    return lines
