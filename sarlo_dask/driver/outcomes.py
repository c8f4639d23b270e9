"""Typed outcomes of the build's stages: what each scene, tile and shard came to, with the
stage, reason, exception type and retries of every failure as fields (never parsed back out
of text), the build's failures.jsonl rows and its exit code."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from sarlo_dask.driver.integrity import Damage
from sarlo_dask.errors import SceneError, exception_line, redact
from sarlo_dask.store import catalogue_root, portable_url

Stage = Literal["ingest", "standardize", "tiles", "optical", "captions", "release"]

NO_OPTICAL_SOURCE = "no optical source"
METADATA_ONLY = "metadata only"
"""optical status of tiles.optical_mode metadata: the pairing recorded, nothing fetched"""
OPTICAL_NOT_FAILED = ("ok", NO_OPTICAL_SOURCE, METADATA_ONLY)


@dataclass(frozen=True)
class Failure:
    """A unit the build could not use: one row of {work}/failures.jsonl."""

    id: str
    kind: Literal["scene", "tile", "shard", "file"]
    stage: Stage
    reason: str
    exception: str = ""
    """type of the exception behind it ("" for a refusal by rule)"""
    retries: int = 0
    """how many times the cluster retried it before giving up"""
    url: str = ""

    @classmethod
    def of(
        cls,
        exc: BaseException,
        id: str,
        kind: Literal["scene", "tile", "shard", "file"],
        stage: Stage,
        retries: int = 0,
    ) -> Failure:
        """From an exception: a SceneError's reason and stage, else 'Type: message'."""
        if isinstance(exc, SceneError):
            return cls(id, kind, exc.stage, exc.reason, type(exc).__name__, retries)  # type: ignore[arg-type]
        return cls(id, kind, stage, exception_line(exc), type(exc).__name__, retries)


@dataclass
class SceneResult:
    url: str
    scene_id: str
    status: Literal["done", "skipped", "failed"]
    store: str = ""
    failure: Failure | None = None
    rebuilt: str = ""
    """why a scene an earlier run completed was made again ("": it was not)"""
    damaged: list[Damage] = field(default_factory=list)
    """what was found damaged of its store, made again in this run"""

    @property
    def reason(self) -> str:
        return self.failure.reason if self.failure else ""

    @property
    def stage(self) -> str:
        return self.failure.stage if self.failure else ""

    def fail(self, exc: BaseException | str, stage: Stage = "standardize") -> None:
        """Mark the scene failed: from an exception, or a refusal by rule (a reason)."""
        self.status = "failed"
        if isinstance(exc, str):
            self.failure = Failure(self.scene_id, "scene", stage, exc, url=redact(self.url))
        else:
            f = Failure.of(exc, self.scene_id, "scene", stage)
            self.failure = Failure(**{**asdict(f), "url": redact(self.url)})

    def line(self) -> str:
        if self.status == "failed":
            return f"FAILED {redact(self.url)}: {self.reason}"
        again = f" (rebuilt: {self.rebuilt})" if self.rebuilt else ""
        return f"{self.status:7s} {self.scene_id} -> {redact(self.store)}{again}"


def summary(results: Sequence[SceneResult]) -> dict[str, Any]:
    counts = {s: sum(r.status == s for r in results) for s in ("done", "skipped", "failed")}
    failed = [{**asdict(r), "url": redact(r.url)} for r in results if r.status == "failed"]
    return {"counts": counts, "failures": failed}


def exit_code(results: Sequence[SceneResult]) -> int:
    """0 all good, 3 some scenes failed while others completed, 4 nothing could be built."""
    failed = sum(r.status == "failed" for r in results)
    if failed == 0:
        return 0
    return 4 if failed == len(results) else 3


@dataclass
class SceneTiles:
    scene_id: str
    status: Literal["done", "skipped", "incomplete"]
    """done, skipped (already complete), incomplete (some tile failed or wants a retry)"""
    kept: int = 0
    refused: list[dict[str, Any]] = field(default_factory=list)
    optical_failed: list[dict[str, Any]] = field(default_factory=list)
    errors: list[Failure] = field(default_factory=list)
    captioned: int = 0
    uncaptioned: list[dict[str, Any]] = field(default_factory=list)
    """tiles kept without captions, with the reason"""
    rebuilt: str = ""
    """why tiles an earlier run made were removed and made again ("": none were)"""
    tiles: dict[str, str] = field(default_factory=dict)
    """kept tile -> sha256 of its meta.json (what the tiles marker records)"""
    damaged: list[Damage] = field(default_factory=list)
    """tiles and caption records found damaged, made again in this run; or the scene's store,
    which the next pass of the build makes again first (no tile was cut from it)"""
    retry_due: int = 0
    """kept tiles whose optical view failed for a reason a later run may not meet"""

    def record(self, summary: dict[str, Any]) -> bool:
        """Count one tile's outcome (a tile_stage summary); whether the tile was made."""
        if summary["status"] == "error":
            why, name = summary["reason"], summary.get("exception", "")
            self.error(Failure(summary["key"], "tile", "tiles", why, name))
            return False
        if summary["status"] != "kept":
            self.refused.append({"key": summary["key"], "reason": summary["status"]})
            return True
        self.kept += 1
        self.tiles[summary["key"]] = summary["digest"]
        if summary["optical"] not in OPTICAL_NOT_FAILED:
            self.optical_failed.append({"key": summary["key"], "reason": summary["optical"]})
            if summary["retry"]:
                self.status = "incomplete"  # transient: a later run fills what is missing
                self.retry_due += 1
        return True

    def error(self, failure: Failure) -> None:
        """A tile (or the scene's planning) failed: the scene is left for a re-run."""
        self.status = "incomplete"
        self.errors.append(failure)

    def empty(self) -> bool:
        """No tile kept and none failed: every window refused (an all-zero scene, say), or no
        window of the tile size fits the scene. The scene gives no sample."""
        return self.kept == 0 and not self.errors

    def record_caption(self, summary: dict[str, Any]) -> None:
        """Count one tile's caption outcome (a caption_stage summary)."""
        if summary["captioned"]:
            self.captioned += 1
        else:
            self.uncaptioned.append({"key": summary["key"], "reason": summary["reason"]})

    def lines(self) -> list[str]:
        """Its line, then one per failed tile."""
        return [self.line(), *(f"FAILED {e.id}: {e.reason}" for e in self.errors)]

    def line(self) -> str:
        text = (
            f"{self.status:10s} {self.scene_id}: {self.kept} tiles, {len(self.refused)} "
            f"refused, {len(self.optical_failed)} without optical, {len(self.errors)} failed"
        )
        if self.status == "skipped" and not self.captioned:
            text = f"skipped {self.scene_id}: tiles already complete"
        if self.captioned or self.uncaptioned:
            text += f"; {self.captioned} captioned, {len(self.uncaptioned)} without caption"
        if self.rebuilt:
            text += f" (rebuilt: {self.rebuilt})"
        return text


XYZTile = tuple[int, int, int]


@dataclass(frozen=True)
class PrefetchOutcome:
    """What one XYZ prefetch task did with the tiles it was given (each tile in one task)."""

    tiles: int
    fetched: int
    empty: int
    """answered 404: the source has no imagery there (recorded in the cache as such)"""
    failed: list[str]
    """one reason per tile still failing after its retries: its tile task fetches it again"""
    worker: str
    """the process that ran it (host:pid)"""
    seconds: float


@dataclass
class Prefetch:
    """What the XYZ prefetch of a tile stage did: its plan, then its fetch tasks."""

    planned: int = 0
    """distinct XYZ tiles the windows to make need"""
    cached: int = 0
    """of those, already in the cache (not fetched)"""
    fetched: int = 0
    empty: int = 0
    failed: list[str] = field(default_factory=list)
    tasks: int = 0
    workers: dict[str, int] = field(default_factory=dict)
    """tiles asked for, by the process that asked"""
    plan_errors: list[str] = field(default_factory=list)
    """scenes whose plan failed: their tile tasks fetch their own tiles"""
    damaged: list[Damage] = field(default_factory=list)
    """cached images found damaged by the plan (sha256): fetched again"""
    plan_seconds: float = 0.0
    """time of the planning tasks (one per scene), then of the fetch tasks, summed over the
    tasks (they run beside the tile tasks of scenes already fetched)"""
    fetch_seconds: float = 0.0

    def add(self, outcome: PrefetchOutcome) -> None:
        self.tasks += 1
        self.fetched += outcome.fetched
        self.empty += outcome.empty
        self.failed += outcome.failed
        self.workers[outcome.worker] = self.workers.get(outcome.worker, 0) + outcome.tiles

    def line(self) -> str:
        return (
            f"XYZ prefetch: {self.planned} tiles planned, {self.cached} already cached, "
            f"{self.fetched} fetched, {self.empty} empty, {len(self.failed)} failed "
            f"(left to their tile tasks) by {self.tasks} tasks on {len(self.workers)} "
            f"workers; planning {self.plan_seconds:.1f} s, fetch {self.fetch_seconds:.1f} s "
            "in tasks"
            + (f"; {len(self.plan_errors)} scenes not planned" if self.plan_errors else "")
        )


@dataclass
class Release:
    """What a release run did: the manifest it wrote and how many shards it wrote now."""

    manifest: dict[str, Any]
    written: int
    reused: int
    errors: list[Failure] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    """shards of earlier releases (generations) removed once this one was published"""
    damaged: list[Damage] = field(default_factory=list)
    """{work} units found damaged while indexing or packing: rebuilt, then released again"""


@dataclass
class Build:
    """The outcome of each stage of one build."""

    scenes: list[SceneResult]
    tiles: list[SceneTiles]
    release: Release
    prefetch: Prefetch | None = None
    """what the XYZ prefetch did (None: there was none)"""

    def pending_damage(self) -> list[Damage]:
        """Damaged units this pass could not rebuild itself: the next pass rebuilds them."""
        stores = [d for t in self.tiles for d in t.damaged if d.kind == "scene"]
        return stores + self.release.damaged

    def failures(self) -> list[dict[str, Any]]:
        """Every scene, tile or shard the build could not use (failures.jsonl rows), sorted."""
        rows = [r.failure for r in self.scenes if r.failure is not None]
        for t in self.tiles:
            if t.empty() and t.refused:
                first = t.refused[0]["reason"]
                why = f"no tile kept: all {len(t.refused)} windows refused ({first})"
                rows.append(Failure(t.scene_id, "scene", "tiles", why))
            elif t.empty():
                why = "no tile kept: no window of the tile size fits the scene"
                rows.append(Failure(t.scene_id, "scene", "tiles", why))
            rows += t.errors
            rows += [Failure(o["key"], "tile", "optical", o["reason"]) for o in t.optical_failed]
        rows += self.release.errors
        return [asdict(r) for r in sorted(rows, key=lambda r: (r.stage, r.id))]

    def failures_jsonl(self) -> bytes:
        """{work}/failures.jsonl: one JSON object per failure, sorted by stage and id."""
        return "".join(json.dumps(r, sort_keys=True) + "\n" for r in self.failures()).encode()

    def exit_code(self) -> int:
        """0 every selected scene gave its samples, 3 some did, 4 no sample at all."""
        if not self.release.manifest["samples"]:
            return 4
        failed = any(r.status == "failed" for r in self.scenes)
        incomplete = any(t.status == "incomplete" or t.empty() for t in self.tiles)
        return 3 if failed or incomplete or self.release.errors else 0


def window_error(key: str, exc: BaseException) -> dict[str, Any]:
    """The summary of a window whose tile raised: its exception on one line, and its type."""
    return {
        "key": key,
        "status": "error",
        "reason": exception_line(exc),
        "exception": type(exc).__name__,
    }


def catalogue_of(
    urls: Sequence[str], selected: Sequence[str], scenes: Sequence[SceneResult]
) -> dict[str, Any]:
    """The manifest's catalogue: how many inputs, the scenes selected, the refused and why
    (local inputs named relative to the catalogue root, as in meta.json)."""
    refused = [r.failure for r in scenes if r.failure is not None]
    root = catalogue_root(urls)
    return {
        "inputs": len(urls),
        "scene_ids": sorted({r.scene_id for r in scenes}),
        "selected": list(selected),
        "refused": [
            {"url": portable_url(f.url, root), "scene_id": f.id, "stage": f.stage}
            | {"reason": f.reason}
            for f in refused
        ],
    }


def transient_scenes(scenes: Sequence[SceneResult], tiles: Sequence[SceneTiles]) -> list[str]:
    """Scenes that failed, or have tiles that failed, for a reason other than a refusal by
    rule (a SceneError): {work} full or unreadable, an input, an optical source or a caption
    server unreachable now. A release made without them would drop their samples: none is
    published (a release shrinks only through refusals)."""
    out = [
        r.scene_id for r in scenes if r.failure and r.failure.exception not in ("", "SceneError")
    ]
    out += [t.scene_id for t in tiles if any(e.kind == "scene" for e in t.errors)]
    out += [
        t.scene_id
        for t in tiles
        if t.retry_due or any(e.exception != "SceneError" for e in t.errors)
    ]
    return sorted(set(out))
