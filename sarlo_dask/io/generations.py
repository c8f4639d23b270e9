"""Releases published whole: each release is written into a generation folder beside the
current one, {out}/gen-<plan digest>/, and becomes current in one atomic step, when
{out}/manifest.json naming it is written (a rename on a local disk, one PUT on S3). Readers
and `sarlo verify` go through that manifest, so at every instant they see the whole old
release or the whole new one; the generations it does not name are removed only after it is
written. The same plan is the same generation: an unchanged re-run finds every shard
committed there and writes nothing.

Like Icechunk's commits and Git's refs: the data is written first, under names nobody reads
yet, and one small object written last makes it the current state.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable
from typing import Any

from sarlo_dask.dataset import MANIFEST, SPLITS, read_manifest
from sarlo_dask.io.index import INDEX
from sarlo_dask.store import Store

PREFIX = "gen-"
STATS = "stats.json"
PAUSE_ENV = "SARLO_PAUSE_AT"
"""a named point at which the build stops until killed (`point` or `point:N`): how the tests
kill a release at a chosen step; unset in any real run"""


def generation_name(digest: str) -> str:
    """The folder of the release of plan `digest`."""
    return f"{PREFIX}{digest}"


def generation(out: Store, digest: str) -> Store:
    """The Store of the release of plan `digest`, under {out}."""
    return Store(out.path(generation_name(digest)), out.options)


def current(out: Store) -> dict[str, Any] | None:
    """The manifest of the current release (None: none has been published)."""
    return read_manifest(out.url, out.options)


def pause_point(point: str, count: int = 1) -> None:
    """Stop here for good when SARLO_PAUSE_AT names this point (and count): the tests' way
    to kill -9 a build at an exact step of its release."""
    wanted = os.environ.get(PAUSE_ENV)
    if wanted and wanted in (f"{point}:{count}", point if count == 1 else None):
        print(f"{PAUSE_ENV} {wanted}: paused (pid {os.getpid()})", file=sys.stderr, flush=True)
        while True:
            time.sleep(60)


def given_scenes(manifest: dict[str, Any]) -> set[str] | None:
    """The scene ids of the inputs a release was built from (None: it does not say)."""
    catalogue = manifest.get("catalogue") or {}
    if "scene_ids" in catalogue:
        return set(catalogue["scene_ids"])
    if "selected" in catalogue:  # a release from before scene_ids were recorded
        return set(catalogue["selected"]) | {r["scene_id"] for r in catalogue.get("refused", [])}
    return None


def _few(names: list[str], n: int = 3) -> str:
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


def input_change(manifest: dict[str, Any] | None, scene_ids: Iterable[str]) -> str | None:
    """How the inputs `scene_ids` differ from those of the release `manifest` describes, on
    one line; None when they are the same (or there is no release)."""
    before = given_scenes(manifest) if manifest else None
    now = set(scene_ids)
    if before is None or now == before:
        return None
    added, gone = sorted(now - before), sorted(before - now)
    parts = [f"{len(added)} scenes not in it ({_few(added)})"] if added else []
    parts += [f"{len(gone)} of its scenes not given ({_few(gone)})"] if gone else []
    return f"holds the release of other inputs: {'; '.join(parts)}"


def departures(
    before: dict[str, Any] | None, after: dict[str, Any], catalogue: dict[str, Any]
) -> list[dict[str, Any]]:
    """The scenes of the release `before` with fewer samples in `after` ({scene: samples}
    maps) because of their input: refused (with the refusal's reason) or no longer given
    (--replace). Changed settings make another release, which owes the old one nothing: a
    re-run gives the manifest of a clean build with its settings."""
    if not before:
        return []
    refused = {r["scene_id"]: r["reason"] for r in catalogue.get("refused", [])}
    given = set(catalogue.get("scene_ids", before))
    out = []
    for scene, n in sorted(before.items()):
        kept = after.get(scene, 0)
        if kept < n and (scene in refused or scene not in given):
            why = f"refused: {refused[scene]}" if scene in refused else "not among the inputs"
            out.append({"scene_id": scene, "samples": n - kept, "reason": why})
    return out


def publish(out: Store, name: str, manifest: dict[str, Any]) -> dict[str, Any]:
    """Make generation `name` (every shard, index and stats written) the current release:
    {out}/manifest.json written last, in one step; unchanged, it is not written again.
    The manifest names the scenes that left since the previous release, and why."""
    old = current(out)
    if old is not None and old.get("generation") == name:
        left = old.get("left", [])  # the same release again: what left, left before it
    else:
        old_scenes = (old or {}).get("scenes")
        left = departures(old_scenes, manifest["scenes"], manifest.get("catalogue", {}))
    manifest = {**manifest, "generation": name, "left": left}
    pause_point("publish")
    out.update_json(out.path(MANIFEST), manifest)
    return manifest


def prune(out: Store, keep: str) -> list[str]:
    """Once the manifest names generation `keep`: remove every other generation and the
    files of a release written before generations ({split}/, index.parquet, stats.json at
    the root). The shards removed, relative to {out}."""
    fs, root = out.filesystem()
    fs.invalidate_cache()
    if not fs.exists(root):
        return []
    stale = []
    for path in sorted(fs.ls(root, detail=False)):
        name = path.rstrip("/").rsplit("/", 1)[-1]
        old_gen = name.startswith(PREFIX) and name != keep
        if old_gen or name in SPLITS or name in (INDEX, STATS):
            stale.append(path)
    removed: list[str] = []
    for path in stale:
        files = sorted(fs.find(path)) if fs.isdir(path) else [path]
        shards = [p for p in files if p.endswith(".tar")]
        rest = [p for p in files if not p.endswith(".tar")]
        removed += [p[len(root) :].lstrip("/") for p in shards]
        for batch in (shards[:1], shards[1:], rest):
            if batch:  # shards first: a half-removed generation is plainly not whole
                fs.rm(batch)
                pause_point("prune")
        if fs.exists(path):
            fs.rm(path, recursive=True)
    return removed
