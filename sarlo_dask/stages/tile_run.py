"""The tile stage over the driver: a scene's tile plan, its XYZ prefetch, its tile tasks and
caption batches, each sent as soon as what it needs is done. Scenes may be added while the
driver runs: a build adds each scene as its store commits."""

from __future__ import annotations

from typing import Any

from sarlo_dask.config import CaptionConfig, TileConfig, on_device
from sarlo_dask.driver.cluster import all_gpus
from sarlo_dask.driver.loop import Done, Driver, Failed, Key, Outcome, Unit
from sarlo_dask.driver.outcomes import Failure, Prefetch, PrefetchOutcome, SceneTiles, window_error
from sarlo_dask.driver.worker_state import WorkerState, share_registered
from sarlo_dask.errors import exception_line
from sarlo_dask.geometry.tiles import Window, tile_groups
from sarlo_dask.stages import resume
from sarlo_dask.stages.caption_pool import CaptionPool
from sarlo_dask.stages.prefetch_stage import (
    XYZPrefetch,
    plan_scene_xyz,
    prefetch_xyz,
    with_xyz_cache,
    xyz_source,
)
from sarlo_dask.stages.tile_stage import make_tiles
from sarlo_dask.store import Store

AHEAD = 2
"""the tile stage's units' priority: ahead of the scene stage's writes (0) and plans (1), so
a committed scene's tiles go before the stores still to write, and samples come early"""


class TileRun:
    """The tile stage's units and records for the scenes added to it (see module)."""

    STAGES = frozenset({"tileplan", "xyzplan", "xyzfetch", "tiles", "caption"})
    """the driver units it owns (Key.stage)"""

    def __init__(
        self, work: Store, cfg: TileConfig, client: Any, captions: CaptionConfig | None
    ) -> None:
        self.work = work
        client.register_plugin(WorkerState())  # parsed SICDs, open stores, host limiters
        share_registered(client)  # the kinds registered in this process, on the workers
        self.cfg = with_xyz_cache(on_device(cfg, all_gpus(client)), work)
        self.pool = CaptionPool(client, work, captions) if captions and captions.model else None
        self.captions = captions if self.pool is not None else None
        self.lineage = (self.cfg.digest(), work.token)
        self.xyz = XYZPrefetch(self.cfg.prefetch_tiles) if xyz_source(self.cfg) else None
        self.prefetching = False
        self.results: dict[str, SceneTiles] = {}
        self.lineages: dict[str, dict[str, Any]] = {}
        self.todo: dict[str, list[Window]] = {}

    def add_scene(self, scene_id: str, drive: Driver) -> None:
        """Plan a completed scene's tiles (what {work} holds of them already is reused)."""
        self.results[scene_id] = SceneTiles(scene_id, "done")
        args = (self.work, scene_id, self.cfg, self.captions)
        key = Key("tileplan", scene_id, self.lineage)
        drive.add(Unit(key, resume.plan_scene_tiles, args, tag=scene_id, priority=AHEAD))

    def collect(self, outcome: Outcome, drive: Driver) -> None:
        """Record a unit's outcome and send what it lets start."""
        stage = outcome.unit.key.stage
        if stage == "caption" and self.pool is not None:
            self.pool.collect(outcome)
        elif stage == "tiles":
            self._tiles_done(outcome)
        elif stage == "tileplan":
            self._planned(outcome, drive)
        elif stage == "xyzplan":
            self._xyz_planned(outcome, drive)
        else:
            self._fetched(outcome, drive)
        for unit in self.pool.ready_units() if self.pool is not None else []:
            drive.add(unit)

    def finish(self) -> list[SceneTiles]:
        """Commit each scene whose tiles are all done (its tiles marker); the records."""
        if self.pool is not None:
            self.pool.record(self.results)
        for res in self.results.values():
            res.refused.sort(key=lambda d: d["key"])
            res.optical_failed.sort(key=lambda d: d["key"])
            if res.status == "done":
                marker = resume.tiles_marker(res, self.lineages[res.scene_id])
                try:
                    self.work.update_json(self.work.tiles_marker(res.scene_id), marker)
                except OSError as exc:  # {work} full or gone: not committed, made again
                    res.error(Failure.of(exc, res.scene_id, "scene", "tiles"))
        return [self.results[k] for k in sorted(self.results)]

    def prefetched(self) -> Prefetch | None:
        """What the XYZ prefetch did (None: there was nothing to prefetch)."""
        return self.xyz.record if self.xyz is not None and self.prefetching else None

    def _planned(self, outcome: Outcome, drive: Driver) -> None:
        sid = outcome.unit.tag
        if isinstance(outcome, Failed):  # {work} unreadable (an S3 outage): left for a re-run
            self.results[sid].error(Failure.of(outcome.error, sid, "scene", "tiles"))
            return
        plan: resume.TilePlan = outcome.value
        if plan.skipped is not None:
            self.results[sid] = SceneTiles(sid, "skipped", **plan.skipped)
            return
        res = self.results[sid]
        res.rebuilt, res.damaged, self.lineages[sid] = plan.rebuilt, plan.damaged, plan.lineage
        if plan.store_damaged():  # the build rebuilds the store, then cuts its tiles
            why = f"its store is damaged ({plan.damaged[-1].path}): rebuilt from its input"
            res.error(Failure(sid, "scene", "tiles", why))
            return
        stored = list(zip(plan.windows, plan.stored, strict=True))
        self.todo[sid] = [w for w, done in stored if done is None]
        for _, done in stored:
            if done is not None:  # completed by an earlier run: recorded the same way
                res.record(done)
        if self.pool is not None:
            self.pool.plan(sid, [w.key for w in plan.windows], plan.captions)
            for w, done in stored:
                if done is not None:
                    self.pool.tile_done(sid, w.key, done)
        if self.xyz is not None and self.todo[sid]:
            self.prefetching = True
            args = (self.work, sid, self.todo[sid], self.cfg)
            key = Key("xyzplan", sid, self.lineage)
            drive.add(Unit(key, plan_scene_xyz, args, tag=sid, priority=AHEAD))
        else:
            self._make(sid, drive)

    def _xyz_planned(self, outcome: Outcome, drive: Driver) -> None:
        assert self.xyz is not None
        sid = outcome.unit.tag
        if isinstance(outcome, Failed):  # its tile tasks fetch their own tiles
            self.xyz.record.plan_errors.append(f"{sid}: {exception_line(outcome.error)}")
            self._make(sid, drive)
            return
        fetches, ready = self.xyz.plan(outcome.value)
        for i in fetches:
            group = self.xyz.groups[i]
            key = Key("xyzfetch", f"{'_'.join(map(str, group[0]))}-{len(group)}", self.lineage)
            drive.add(Unit(key, prefetch_xyz, (self.cfg, group), tag=i, priority=AHEAD))
        if ready:
            self._make(sid, drive)

    def _fetched(self, outcome: Outcome, drive: Driver) -> None:
        assert self.xyz is not None
        i = outcome.unit.tag
        if isinstance(outcome, Done):
            got = outcome.value
        else:  # the task was lost: its tiles are left to the tile tasks
            n, why = len(self.xyz.groups[i]), exception_line(outcome.error)
            got = PrefetchOutcome(n, 0, 0, [why] * n, "lost", 0.0)
        for sid in self.xyz.fetched(i, got):
            self._make(sid, drive)

    def _make(self, sid: str, drive: Driver) -> None:
        made = self.lineages[sid]["scene_config"]
        for group in tile_groups(self.todo[sid]):
            key = Key("tiles", f"{group[0].key}-{len(group)}", (made, *self.lineage))
            args = (self.work, group, self.cfg, made)
            drive.add(Unit(key, make_tiles, args, tag=(sid, group), priority=AHEAD))

    def _tiles_done(self, outcome: Outcome) -> None:
        """A tile task's summaries (every window of it failed if the task did)."""
        sid, group = outcome.unit.tag
        if isinstance(outcome, Done):
            summaries = outcome.value
        else:
            summaries = [window_error(w.key, outcome.error) for w in group]
        for summary in summaries:
            ok = self.results[sid].record(summary)
            if self.pool is not None:
                self.pool.tile_done(sid, summary["key"], summary if ok else None)
