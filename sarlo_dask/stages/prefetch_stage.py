"""The XYZ prefetch: every XYZ tile a tile stage will warp from is fetched once per build,
by exactly one task, before the tile tasks that need it start (which then find it in the
shared cache).

Without a plan, two workers needing the same tile at the same moment both fetch it: the
cache is shared but has no lock. The plan is made per scene, as the scene comes (a task reads
the scene store's tie points and asks `pair.xyz_tiles_needed`, the function the pairing
itself fetches by, for each window still to make); what it needs that the cache does not hold
and no earlier plan asked for is split into groups in (z, x, y) order, and each group is one
fetch task through the tile stage's own source (rate limit, retries, Retry-After,
whole-or-nothing cache writes). A scene's tile tasks start once the fetches of its tiles are
done (`XYZPrefetch`). A tile whose prefetch failed is not in the cache: the tile task that
needs it fetches it again, as before. The plan reads each cached image it counts on and checks
its sha256: a damaged one is said (a DAMAGED line of the build) and fetched again.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from sarlo_dask.config import TileConfig
from sarlo_dask.driver.integrity import Damage
from sarlo_dask.driver.outcomes import Prefetch, PrefetchOutcome, XYZTile
from sarlo_dask.geometry.tiles import Window, polygon_mask
from sarlo_dask.optical.pair import xyz_tiles_needed
from sarlo_dask.optical.source import TileFailure, XYZSource
from sarlo_dask.stages.tile_stage import optical_source, pair_config
from sarlo_dask.store import Store


def with_xyz_cache(cfg: TileConfig, work: Store) -> TileConfig:
    """`cfg` whose XYZ cache is shared by every worker: tiles.tile_cache, else
    {work}/xyz-cache with {work}'s storage options ({work} is shared: every tile task writes
    there). Neither changes the settings' digest: where tiles are cached shapes no tile."""
    if cfg.tile_cache or not (cfg.optical or "").startswith(("http://", "https://")):
        return cfg
    update = {"tile_cache": work.xyz_cache(), "tile_cache_options": work.options}
    return cfg.model_copy(update=update)


def xyz_source(cfg: TileConfig) -> XYZSource | None:
    """The XYZ source over HTTP the tile tasks will fetch images from, when there is one to
    prefetch for (tiles.optical_mode fetch, tiles.prefetch_tiles > 0); else None."""
    if cfg.optical_mode != "fetch" or cfg.prefetch_tiles == 0:
        return None
    if not (cfg.optical or "").startswith(("http://", "https://")):
        return None
    source = optical_source(cfg)
    return source if isinstance(source, XYZSource) and source.prefetchable else None


@dataclass(frozen=True)
class XYZNeeds:
    """The XYZ tiles one scene's windows to make need, and which of them are cached."""

    scene_id: str
    tiles: list[XYZTile]
    cached: list[XYZTile]
    windows: int
    """windows planned: those to make whose ValidData share reaches min_valid_fraction"""
    seconds: float
    damaged: list[Damage] = field(default_factory=list)
    """cached images whose bytes are not those recorded at commit: fetched again"""


def plan_scene_xyz(
    work: Store, scene_id: str, windows: Sequence[Window], cfg: TileConfig
) -> XYZNeeds:
    """A scene's XYZNeeds (a task: reads the store's tie points and SICD, lists the cache).

    A window whose share inside the ValidData polygon is under min_valid_fraction will be
    refused (its valid fraction is at most that share): it needs no tiles."""
    from sarlo_dask.geometry.sicd import sicd_from_xml
    from sarlo_dask.stages.standardize import open_scene_store

    t0 = time.perf_counter()
    source = xyz_source(cfg)
    assert source is not None, "no XYZ source to plan for"
    ds = open_scene_store(work.scene_store(scene_id), work.options, chunks=None, indexes=False)
    poly = sicd_from_xml(ds.attrs["sicd_xml"]).ImageData.ValidData
    vertices = None if poly is None else poly.get_array(dtype="float64")
    ds = ds[["lat", "lon", "hae"]].load()
    pair_cfg = pair_config(cfg)
    need: set[XYZTile] = set()
    planned = 0
    for w in windows:
        if vertices is not None:
            inside = polygon_mask(vertices, w.a0, w.r0, w.size).mean()
            if inside < cfg.min_valid_fraction:
                continue
        planned += 1
        need.update(xyz_tiles_needed(w, ds, pair_cfg))
    tiles = sorted(need)
    damaged: list[Damage] = []
    cached = sorted(source.cached(tiles, damaged))
    return XYZNeeds(scene_id, tiles, cached, planned, time.perf_counter() - t0, damaged)


@dataclass(frozen=True)
class FetchPlan:
    """The build's XYZ tiles to fetch, each in exactly one group (one task)."""

    groups: list[list[XYZTile]]
    planned: int
    """distinct tiles the windows need"""
    cached: int
    """of those, already in the cache"""


def fetch_plan(
    needs: Sequence[XYZNeeds], size: int, requested: Collection[XYZTile] = ()
) -> FetchPlan:
    """The tiles any scene needs and none found cached nor is `requested` already, in groups
    of at most `size` in (z, x, y) order (neighbours, which share server and cache columns,
    go together)."""
    wanted = {t for n in needs for t in n.tiles}
    todo = sorted(wanted - {t for n in needs for t in n.cached} - set(requested))
    groups = [todo[i : i + size] for i in range(0, len(todo), size)]
    return FetchPlan(groups, len(wanted), len(wanted) - len(todo))


@dataclass
class XYZPrefetch:
    """The build's XYZ prefetch as its scenes' plans come in (pure bookkeeping, no cluster):
    each uncached tile goes to one fetch task, made by the first plan that needs it; a
    scene's tile tasks wait for the fetch tasks of the tiles it needs (its own and those
    another scene's plan sent first), and no longer."""

    size: int
    record: Prefetch = field(default_factory=Prefetch)
    groups: list[list[XYZTile]] = field(default_factory=list)
    """the fetch tasks' tiles, by fetch id (their index)"""
    wanted: set[XYZTile] = field(default_factory=set)
    fetch_of: dict[XYZTile, int] = field(default_factory=dict)
    waiting: dict[int, set[str]] = field(default_factory=dict)
    """fetch id -> scenes whose tile tasks wait for it"""
    waits: dict[str, set[int]] = field(default_factory=dict)

    def plan(self, needs: XYZNeeds) -> tuple[list[int], bool]:
        """A scene's needs: the fetch ids of the groups it adds, and whether its tile tasks
        may start now (no tile it needs is still being fetched)."""
        self.wanted.update(needs.tiles)
        known = {d.path for d in self.record.damaged}
        self.record.damaged += [d for d in needs.damaged if d.path not in known]
        self.record.plan_seconds += needs.seconds
        ids = []
        for group in fetch_plan([needs], self.size, self.fetch_of.keys()).groups:
            ids.append(len(self.groups))
            self.fetch_of.update((t, ids[-1]) for t in group)
            self.groups.append(group)
            self.waiting[ids[-1]] = set()
        waits = {self.fetch_of[t] for t in needs.tiles if t in self.fetch_of}
        waits &= self.waiting.keys()  # fetches not yet done
        for i in waits:
            self.waiting[i].add(needs.scene_id)
        self.waits[needs.scene_id] = waits
        self.record.planned = len(self.wanted)
        self.record.cached = len(self.wanted) - len(self.fetch_of)
        return ids, not waits

    def fetched(self, fetch_id: int, outcome: PrefetchOutcome) -> list[str]:
        """A fetch task's outcome: the scenes whose tile tasks may start now."""
        self.record.add(outcome)
        self.record.fetch_seconds += outcome.seconds
        ready = []
        for sid in sorted(self.waiting.pop(fetch_id)):
            self.waits[sid].discard(fetch_id)
            if not self.waits[sid]:
                ready.append(sid)
        return ready


def prefetch_xyz(cfg: TileConfig, tiles: Sequence[XYZTile]) -> PrefetchOutcome:
    """Fetch `tiles` into the cache through the tile stage's source (a task); say how many
    came, were empty (404) or failed, and why."""
    t0 = time.perf_counter()
    source = xyz_source(cfg)
    assert source is not None, "no XYZ source to prefetch from"
    got = source.fetch(list(tiles))
    failed = [r.reason for r in got.values() if isinstance(r, TileFailure)]
    empty = sum(r is None for r in got.values())
    return PrefetchOutcome(
        tiles=len(tiles),
        fetched=len(got) - empty - len(failed),
        empty=empty,
        failed=failed,
        worker=f"{socket.gethostname()}:{os.getpid()}",
        seconds=time.perf_counter() - t0,
    )
