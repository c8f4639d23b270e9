"""The caption-worker pool: caption batches fed to the cluster as tile futures complete."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sarlo_dask.captions.backend import CaptionModels
from sarlo_dask.captions.interface import uses_gpu
from sarlo_dask.config import CaptionConfig
from sarlo_dask.driver.cluster import worker_gpus
from sarlo_dask.driver.loop import Done, Driver, Key, Outcome, Unit
from sarlo_dask.driver.outcomes import Failure, SceneTiles
from sarlo_dask.stages.caption_stage import caption_batch, stored_captions
from sarlo_dask.store import Store

Batch = tuple[str, int]
"""(scene id, index of the batch among the scene's windows)"""


class CaptionPool:
    """Caption batches fed to the cluster as tile futures complete.

    Batches are fixed runs of `batch_size` consecutive windows of a scene (captioning the
    kept ones among them), so their make-up, and so the model's padded inputs, never
    depend on the order tiles finish in: captions are the same bytes on every run. A
    batch goes out once all its windows are done, at most `limit` batches are queued on
    the cluster at once (backpressure), and on GPU clusters each asks for one GPU when the
    model runs in the task; with a server backend none does, and enough batches are queued
    to keep twice the servers' request slots filled.
    """

    def __init__(self, client: Any, work: Store, cfg: CaptionConfig) -> None:
        self.client, self.work, self.cfg = client, work, cfg
        client.register_plugin(CaptionModels())  # per-worker set-up: models kept between tasks
        gpus = worker_gpus(client)
        self.servers = not uses_gpu(cfg)
        self.share = 1  # processes sending to the servers at once (the workers)
        if not self.servers:  # the model runs in the task: one GPU each where there are GPUs
            self.resources = {"GPU": 1} if any(gpus) else None
            self.limit = cfg.max_in_flight or 2 * max(1, len(gpus))
        else:  # servers hold the GPUs: enough batches to keep every server's slots busy
            self.resources = None
            self.share = max(1, len(gpus))
            per_batch = cfg.batch_size * len(cfg.prompts)
            slots = cfg.concurrency * len(cfg.servers)
            self.limit = cfg.max_in_flight or max(2 * self.share, -(-2 * slots // per_batch))
        self.batch_of: dict[str, Batch] = {}
        self.left: dict[Batch, int] = {}
        self.todo: dict[Batch, list[str]] = {}
        self.ready: list[Batch] = []
        self.out = 0  # batches sent and not yet collected
        self.stored: dict[str, dict[str, dict[str, Any]]] = {}
        self.done: list[tuple[str, dict[str, Any]]] = []
        self.errors: list[tuple[str, Failure]] = []

    def plan(self, scene_id: str, keys: Sequence[str], stored: dict[str, dict[str, Any]]) -> None:
        """A scene's windows (keys in window order) split into its fixed batches; `stored`:
        the caption records an earlier run made of these very tiles (by key)."""
        self.stored[scene_id] = stored
        b = self.cfg.batch_size
        for i in range(0, len(keys), b):
            batch = (scene_id, i // b)
            self.left[batch] = len(keys[i : i + b])
            self.todo[batch] = []
            for key in keys[i : i + b]:
                self.batch_of[key] = batch

    def tile_done(self, scene_id: str, key: str, summary: dict[str, Any] | None) -> None:
        """A window finished (summary None: it failed); its batch may now be ready."""
        batch = self.batch_of[key]
        if summary is not None and summary["status"] == "kept":
            rec = self.stored[scene_id].get(key)
            if rec is not None:
                self.done.append(
                    (scene_id, {"key": key, "captioned": rec["caption"] is not None, **rec})
                )
            else:
                self.todo[batch].append(key)
        self.left[batch] -= 1
        if self.left[batch] == 0 and self.todo[batch]:
            self.ready.append(batch)

    def ready_units(self) -> list[Unit[Any]]:
        """Ready batches as driver units, while fewer than `limit` are out (backpressure)."""
        units: list[Unit[Any]] = []
        if self.servers and self.ready:  # an adaptive cluster may have grown
            self.share = max(self.share, len(worker_gpus(self.client)))
        while self.ready and self.out < self.limit:
            batch = self.ready.pop(0)
            keys = sorted(self.todo[batch])
            args = (self.work, batch[0], keys, self.cfg, self.share)
            key = Key("caption", keys[0], (self.cfg.digest(), self.work.token))
            retries, resources = self.cfg.retries, self.resources
            units.append(
                Unit(key, caption_batch, args, batch, 3, retries, resources)
            )  # ahead of tiles
            self.out += 1
        return units

    def record(self, results: dict[str, SceneTiles]) -> None:
        """Put the captions' outcomes into the scenes' records."""
        for scene_id, summary in sorted(self.done, key=lambda d: d[1]["key"]):
            if summary.get("transient"):  # a server failed it: the build is not complete
                failure = Failure(summary["key"], "tile", "captions", summary["reason"])
                results[scene_id].error(failure)
            results[scene_id].record_caption(summary)
        for scene_id, failure in self.errors:
            results[scene_id].error(failure)

    def collect(self, outcome: Outcome) -> None:
        """A caption batch's outcome: its captions, or its tiles' failure."""
        self.out -= 1
        batch: Batch = outcome.unit.tag
        scene_id = batch[0]
        if isinstance(outcome, Done):
            self.done.extend((scene_id, summary) for summary in outcome.value)
            return
        for key in sorted(self.todo[batch]):
            failure = Failure.of(outcome.error, key, "tile", "captions", retries=self.cfg.retries)
            self.errors.append((scene_id, failure))


def caption_tiles(
    work: str | Store,
    cfg: CaptionConfig,
    client: Any,
    keys: dict[str, list[str]],
    storage_options: dict[str, Any] | None = None,
) -> dict[str, SceneTiles]:
    """Caption tiles already in {work}/tiles ({scene_id: sorted tile keys}) through the pool."""
    work = Store.of(work, storage_options)
    pool = CaptionPool(client, work, cfg)
    for scene_id, scene_keys in keys.items():
        marker = work.tiles_marker(scene_id)  # the tiles' lineage: stored captions of it
        lineage = work.read_json(marker).get("lineage") if work.exists(marker) else None
        pool.plan(scene_id, scene_keys, stored_captions(work, scene_id, cfg, lineage)[0])
        for k in scene_keys:
            pool.tile_done(scene_id, k, {"status": "kept"})
    drive = Driver(client)
    for unit in pool.ready_units():
        drive.add(unit)
    for outcome in drive:
        pool.collect(outcome)
        for unit in pool.ready_units():
            drive.add(unit)
    results = {scene_id: SceneTiles(scene_id, "done", kept=len(k)) for scene_id, k in keys.items()}
    pool.record(results)
    return results
