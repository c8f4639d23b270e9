"""The scene stage over the driver: each scene's plan (reuse its store, or write it), then its
write, committed by its marker as soon as it is done."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

from sarlo_dask.config import StandardizeConfig, on_device
from sarlo_dask.driver.cluster import (
    all_gpus,
    cluster_size,
    install_quiet_refusals,
    worker_memory,
)
from sarlo_dask.driver.loop import Driver, Failed, Key, Outcome, Unit
from sarlo_dask.driver.outcomes import SceneResult
from sarlo_dask.driver.worker_state import share_registered
from sarlo_dask.io.readers import scene_id_from_url
from sarlo_dask.stages import resume
from sarlo_dask.stages.scene_stage import plan_scene_store
from sarlo_dask.store import Store, canonical


class SceneRun:
    """The scene stage's units and records for `urls` (see module)."""

    STAGES = frozenset({"plan", "write"})
    """the driver units it owns (Key.stage)"""

    def __init__(
        self, urls: Sequence[str], work: Store, cfg: StandardizeConfig, client: Any
    ) -> None:
        install_quiet_refusals(client)  # a refusal is one line here, not a worker traceback
        share_registered(client)  # a reader registered here reads on the workers too
        self.urls = [canonical(u) for u in urls]  # one unit per file, however it is spelled
        self.cfg = on_device(cfg, all_gpus(client))
        self.work, self.digest = work, self.cfg.digest()
        self.selection = self.cfg.selection_digest()
        self.memory = worker_memory(client)
        self.results: list[SceneResult] = []
        self.made: dict[str, dict[str, Any]] = {}
        """what the markers of the scenes written record"""
        self.client = client
        self.writes: deque[Unit[Any]] = deque()
        """scenes planned to be written, waiting for a place among the writes"""
        self.writing = 0
        self.plans: deque[Unit[Any]] = deque()
        self.planning = 0

    def start(self, drive: Driver) -> None:
        """Plan every scene (a scene id given twice is refused, its first URL kept)."""
        seen: dict[str, str] = {}
        for url in self.urls:
            scene_id = scene_id_from_url(url)
            res = SceneResult(url, scene_id, "done", store=self.work.scene_store(scene_id))
            self.results.append(res)
            if scene_id in seen:
                res.fail(f"duplicate scene id {scene_id!r} (also {seen[scene_id]})", "ingest")
                continue
            seen[scene_id] = url
            key = Key("plan", scene_id, (self.digest, self.work.token))
            args = (url, scene_id, self.work, self.cfg, self.memory)
            # priority: ahead of the writes already sent, so the next scenes keep coming
            self.plans.append(Unit(key, plan_scene_store, args, tag=res, priority=1))
        self._send(drive)

    def collect(self, outcome: Outcome, drive: Driver) -> str | None:
        """Record a unit's outcome; the scene's id once its store is committed (reused or
        written now), else None. Then send what the freed places allow."""
        stage = outcome.unit.key.stage
        self.planning -= stage == "plan"
        self.writing -= stage == "write"  # its place goes to the next scene's write
        committed = self._record(outcome)
        self._send(drive)
        return committed

    def _record(self, outcome: Outcome) -> str | None:
        res: SceneResult = outcome.unit.tag
        stage = outcome.unit.key.stage
        if isinstance(outcome, Failed):
            res.fail(outcome.error)
            return None
        if stage == "plan":  # the scene's store: reused, or written now
            plan = outcome.value
            res.rebuilt, res.damaged = plan.rebuilt, plan.damaged
            if plan.write is None:
                res.status = "skipped"
                return res.scene_id
            made = {"digest": plan.digest, "settings": self.digest, "inputs": plan.inputs}
            self.made[res.scene_id] = made | {"selection": self.selection}
            key = Key("write", res.scene_id, (self.digest, self.work.token))
            self.writes.append(Unit(key, plan.write, tag=res))
            return None
        try:  # written: committed by its marker
            marker = resume.scene_marker(res, **self.made[res.scene_id], digests=outcome.value)
            self.work.write_json(self.work.scene_marker(res.scene_id), marker)
        except Exception as exc:
            res.fail(exc)
            return None
        return res.scene_id

    def _send(self, drive: Driver) -> None:
        """Writes while fewer than `most` are out: a few whole scenes, each parallel in
        itself, commit (and their tiles start) sooner than every scene interleaved; plans
        (one per thread of the cluster, as it is now: an adaptive one grows) while fewer than
        `most` planned scenes wait to be written, so that the first stores commit after a
        few plans, not after every scene's header is read, and a resume that reuses every
        store checks them a thread each."""
        workers, threads = cluster_size(self.client)
        most = 1 if threads <= 1 else max(2, workers)
        while self.writes and self.writing < most:
            self.writing += 1
            drive.add(self.writes.popleft())
        while self.plans and self.planning < max(1, threads) and len(self.writes) < most:
            self.planning += 1
            drive.add(self.plans.popleft())
