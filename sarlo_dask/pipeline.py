"""The only module that talks to the Dask client: stages over many scenes, skip and resume.

One scene's failure is recorded with its reason and never stops the others.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from sarlo_dask import __version__
from sarlo_dask.caption_stage import caption_batch, stored_captions
from sarlo_dask.captions.stats import dataset_stats
from sarlo_dask.cluster import install_quiet_refusals
from sarlo_dask.config import (
    CaptionConfig,
    ReleaseConfig,
    StandardizeConfig,
    TileConfig,
    on_device,
)
from sarlo_dask.errors import SceneError, exception_line, redact
from sarlo_dask.release import (
    SampleRef,
    ShardSpec,
    committed,
    plan_digest,
    prune_shards,
    scene_index,
    shard_plan,
    split_passes,
    split_report,
    write_shard,
)
from sarlo_dask.resume import remove_scene_tiles, stale_reason
from sarlo_dask.sicd import open_sicd, scene_id_from_url
from sarlo_dask.standardize import open_scene_store, standardize_scene
from sarlo_dask.store import (
    exists,
    filesystem,
    join,
    read_json,
    remove,
    remove_partials,
    scene_marker_url,
    scene_store_url,
    tiles_marker_url,
    update_bytes,
    update_json,
    url_token,
    write_json,
)
from sarlo_dask.tile_stage import make_tiles, stored_summary
from sarlo_dask.tiles import Window, tile_groups, tile_windows


@dataclass
class SceneResult:
    url: str
    scene_id: str
    status: str
    """done, skipped (already complete) or failed"""
    reason: str = ""
    stage: str = ""
    store: str = ""
    exception: str = ""
    """type of the exception behind a failure ("" for a refusal by rule)"""
    rebuilt: str = ""
    """why a scene an earlier run completed was made again ("": it was not)"""

    def fail(self, exc: BaseException) -> None:
        """Mark the scene failed with the exception's reason, stage and type."""
        self.status = "failed"
        self.reason, self.stage = _reason(exc)
        self.exception = type(exc).__name__

    def line(self) -> str:
        if self.status == "failed":
            return f"FAILED {redact(self.url)}: {self.reason}"
        again = f" (rebuilt: {self.rebuilt})" if self.rebuilt else ""
        return f"{self.status:7s} {self.scene_id} -> {self.store}{again}"


def _reason(exc: BaseException) -> tuple[str, str]:
    if isinstance(exc, SceneError):
        return exc.reason, exc.stage
    return exception_line(exc), "standardize"


def plan_scene_store(url: str, store: str, cfg: StandardizeConfig, memory: int) -> Any:
    """Plan the scene's standardization and create its store (a task): the write, delayed.

    Reading the header, the grid algebra, the tie-point step search and the store's metadata
    take a fraction of a second per scene: on the workers they run in parallel, where the
    client would plan a catalogue's scenes one after another (and on a small machine take
    the workers' cores to do it)."""
    so = cfg.storage_options
    scene = open_sicd(url, cfg.chunk_range, so)
    _check_fits(scene, cfg, url, memory)
    out = standardize_scene(scene, cfg)
    remove(store, so)  # a partial store from an interrupted run
    with warnings.catch_warnings():
        # consolidated metadata is not in the v3 spec yet; zarr and xarray read it,
        # and it lets a plain xr.open_zarr(url) open the store in one request
        warnings.filterwarnings("ignore", message="Consolidated metadata")
        return out.to_zarr(
            store,
            mode="w",
            compute=False,
            consolidated=True,
            zarr_format=3,
            storage_options=so or None,
        )


def standardize_scenes(
    urls: Sequence[str],
    work: str,
    cfg: StandardizeConfig,
    client: Any,
    progress: Callable[[list[Any]], None] | None = None,
) -> list[SceneResult]:
    """Standardize every scene into {work}/scenes/{scene_id}.zarr, skipping completed ones."""
    from distributed import as_completed

    install_quiet_refusals(client)  # a refusal is one line here, not a worker traceback
    cfg = on_device(cfg, _all_gpus(client))
    so = cfg.storage_options
    results: list[SceneResult] = []
    plans: dict[Any, SceneResult] = {}
    pending: dict[Any, SceneResult] = {}
    seen: dict[str, str] = {}
    memory = worker_memory(client)
    for url in urls:
        scene_id = scene_id_from_url(url)
        store = scene_store_url(work, scene_id)
        res = SceneResult(url, scene_id, "done", store=store)
        results.append(res)
        if scene_id in seen:
            res.status, res.stage = "failed", "ingest"
            res.reason = f"duplicate scene id {scene_id!r} (also {seen[scene_id]})"
            continue
        seen[scene_id] = url
        marker = scene_marker_url(work, scene_id)
        if exists(marker, so):
            made = read_json(marker, so).get("config")
            if made == cfg.digest():
                res.status = "skipped"
                continue
            res.rebuilt = f"standardize settings changed ({made} -> {cfg.digest()})"
            remove(marker, so)  # not complete under these settings until rewritten
        plan = client.submit(
            plan_scene_store,
            url,
            store,
            cfg,
            memory,
            pure=False,
            priority=1,  # ahead of the writes already sent: the next scenes keep coming
            key=f"plan-{scene_id}-{cfg.digest()}-{url_token(store)}",
        )
        plans[plan] = res
    for plan in as_completed(list(plans)):
        res = plans[plan]
        try:
            write = plan.result()
        except Exception as exc:
            res.fail(exc)
            continue
        finally:
            plan.release()
        pending[client.compute(write)] = res
    if progress is not None and pending:
        progress(list(pending))
    for future in as_completed(list(pending)):
        res = pending[future]
        try:
            future.result()
            write_json(
                scene_marker_url(work, res.scene_id),
                {
                    "scene_id": res.scene_id,
                    "source_url": res.url,
                    "store": f"scenes/{res.scene_id}.zarr",  # relative to {work}
                    "package_version": __version__,
                    "config": cfg.digest(),
                },
                so,
            )
        except Exception as exc:
            res.fail(exc)
        finally:
            future.release()
    return results


def worker_gpus(client: Any) -> list[bool]:
    """Whether each worker of the cluster declares a GPU resource."""
    workers = client.scheduler_info()["workers"].values()
    return [bool(w.get("resources", {}).get("GPU")) for w in workers]


def _all_gpus(client: Any) -> bool:
    """Every worker has a GPU: device 'auto' means 'cuda' (tasks may land on any worker)."""
    gpus = worker_gpus(client)
    return bool(gpus) and all(gpus)


def worker_memory(client: Any) -> int:
    """The smallest memory limit of the cluster's workers in bytes (0: none set or known)."""
    limits = [w.get("memory_limit") or 0 for w in client.scheduler_info()["workers"].values()]
    return min(limits) if limits and all(limits) else 0


BLOCK_WORKING_SET = 4
"""a resampling task holds about this many copies of its block (input, FFT, output)"""


def _check_fits(scene: Any, cfg: StandardizeConfig, url: str, memory: int) -> None:
    """Refuse, before any read, a scene whose resampling tasks a worker cannot hold: a task
    holds about BLOCK_WORKING_SET copies of its block (chunk_range range lines of every
    azimuth sample, then chunk_azimuth azimuth lines of every range sample); half the limit
    leaves room for the worker itself. The scene as a whole streams through the workers."""
    n_az, n_rg = scene.slc.shape
    blocks = {"chunk_range": cfg.chunk_range * n_az, "chunk_azimuth": cfg.chunk_azimuth * n_rg}
    name, pixels = max(blocks.items(), key=lambda kv: kv[1])
    need = pixels * 8 * BLOCK_WORKING_SET  # complex64
    if memory and need > memory / 2:
        raise SceneError(
            url,
            f"a resampling task of this {n_az} x {n_rg} scene needs about {need / 1e9:.2f} GB "
            f"({name} {getattr(cfg, name)}): it does not fit workers with "
            f"{memory / 1e9:.2f} GB of memory: lower standardize.{name} or use workers "
            "with more memory",
        )


def summary(results: Sequence[SceneResult]) -> dict[str, Any]:
    counts = {s: sum(r.status == s for r in results) for s in ("done", "skipped", "failed")}
    return {"counts": counts, "failures": [asdict(r) for r in results if r.status == "failed"]}


def exit_code(results: Sequence[SceneResult]) -> int:
    """0 all good, 3 some scenes failed while others completed, 4 nothing could be built."""
    failed = sum(r.status == "failed" for r in results)
    if failed == 0:
        return 0
    return 4 if failed == len(results) else 3


@dataclass
class SceneTiles:
    scene_id: str
    status: str
    """done, skipped (already complete), incomplete (some tile failed or wants a retry)"""
    kept: int = 0
    refused: list[dict[str, Any]] = field(default_factory=list)
    optical_failed: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    captioned: int = 0
    uncaptioned: list[dict[str, Any]] = field(default_factory=list)
    """tiles kept without captions, with the reason"""
    rebuilt: str = ""
    """why tiles an earlier run made were removed and made again ("": none were)"""

    def record(self, summary: dict[str, Any]) -> None:
        """Count one tile's outcome (a tile_stage summary)."""
        if summary["status"] != "kept":
            self.refused.append({"key": summary["key"], "reason": summary["status"]})
            return
        self.kept += 1
        if summary["optical"] not in ("ok", "no optical source"):
            self.optical_failed.append({"key": summary["key"], "reason": summary["optical"]})
            if summary["retry"]:
                self.status = "incomplete"  # transient: a later run fills what is missing

    def empty(self) -> bool:
        """Every window refused (an all-zero scene, say): the scene gives no sample."""
        return self.kept == 0 and bool(self.refused) and not self.errors

    def record_caption(self, summary: dict[str, Any]) -> None:
        """Count one tile's caption outcome (a caption_stage summary)."""
        if summary["captioned"]:
            self.captioned += 1
        else:
            self.uncaptioned.append({"key": summary["key"], "reason": summary["reason"]})

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


def completed_scenes(work: str, storage_options: dict[str, Any] | None = None) -> list[str]:
    """Scene ids whose standardization finished (their marker exists), sorted."""
    fs, path = filesystem(join(work, "scenes"), storage_options)
    fs.invalidate_cache()
    if not fs.exists(path):
        return []
    names = [p.rsplit("/", 1)[-1] for p in fs.ls(path, detail=False)]
    return sorted(n[: -len(".done.json")] for n in names if n.endswith(".done.json"))


class CaptionPool:
    """Caption batches fed to the cluster as tile futures complete.

    Batches are fixed runs of `batch_size` consecutive windows of a scene (captioning the
    kept ones among them), so their make-up, and so the model's padded inputs, never
    depend on the order tiles finish in: captions are the same bytes on every run. A
    batch goes out once all its windows are done, at most `limit` batches are queued on
    the cluster at once (backpressure), and on GPU clusters each asks for one GPU.
    """

    def __init__(self, client: Any, work: str, cfg: CaptionConfig, so: dict[str, Any]) -> None:
        self.client, self.work, self.cfg, self.so = client, work, cfg, so
        gpus = worker_gpus(client)
        self.resources = {"GPU": 1} if any(gpus) else None
        self.limit = cfg.max_in_flight or 2 * max(1, len(gpus))
        self.batch_of: dict[str, tuple[str, int]] = {}
        self.left: dict[tuple[str, int], int] = {}
        self.todo: dict[tuple[str, int], list[str]] = {}
        self.ready: list[tuple[str, int]] = []
        self.in_flight: dict[Any, tuple[str, int]] = {}
        self.stored: dict[str, dict[str, dict[str, Any]]] = {}
        self.done: list[tuple[str, dict[str, Any]]] = []
        self.errors: list[tuple[str, dict[str, Any]]] = []

    def plan(self, scene_id: str, keys: Sequence[str], lineage: dict[str, Any] | None) -> None:
        """A scene's windows (keys in window order) split into its fixed batches; `lineage`:
        the settings its tiles are made under (captions of tiles made otherwise are stale)."""
        self.stored[scene_id] = stored_captions(self.work, scene_id, self.cfg, self.so, lineage)
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

    def submit_ready(self) -> list[Any]:
        """Send ready batches while fewer than `limit` are queued; the futures sent."""
        sent = []
        while self.ready and len(self.in_flight) < self.limit:
            batch = self.ready.pop(0)
            scene_id = batch[0]
            keys = sorted(self.todo[batch])
            fut = self.client.submit(
                caption_batch,
                self.work,
                scene_id,
                keys,
                self.cfg,
                self.so,
                pure=False,
                key=f"caption-{keys[0]}-{self.cfg.digest()}-{url_token(self.work)}",
                retries=self.cfg.retries,
                resources=self.resources,
            )
            self.in_flight[fut] = batch
            sent.append(fut)
        return sent

    def owns(self, future: Any) -> bool:
        return future in self.in_flight

    def record(self, results: dict[str, SceneTiles]) -> None:
        """Put the captions' outcomes into the scenes' records."""
        for scene_id, summary in sorted(self.done, key=lambda d: d[1]["key"]):
            results[scene_id].record_caption(summary)
        for scene_id, err in self.errors:
            results[scene_id].status = "incomplete"
            results[scene_id].errors.append(err)

    def collect(self, future: Any) -> None:
        batch = self.in_flight.pop(future)
        scene_id = batch[0]
        try:
            for summary in future.result():
                self.done.append((scene_id, summary))
        except Exception as exc:
            reason = _reason(exc)[0]
            for key in sorted(self.todo[batch]):
                self.errors.append(
                    (
                        scene_id,
                        {"key": key, "reason": f"caption: {reason}", "retries": self.cfg.retries},
                    )
                )
        finally:
            future.release()


def caption_tiles(
    work: str,
    cfg: CaptionConfig,
    client: Any,
    keys: dict[str, list[str]],
    storage_options: dict[str, Any] | None = None,
) -> dict[str, SceneTiles]:
    """Caption tiles already in {work}/tiles ({scene_id: sorted tile keys}) through the pool."""
    from distributed import as_completed

    so = storage_options or {}
    pool = CaptionPool(client, work, cfg, so)
    for scene_id, scene_keys in keys.items():
        marker = tiles_marker_url(work, scene_id)  # the tiles' lineage: stored captions of it
        lineage = read_json(marker, so).get("lineage") if exists(marker, so) else None
        pool.plan(scene_id, scene_keys, lineage)
        for k in scene_keys:
            pool.tile_done(scene_id, k, {"status": "kept"})
    queue = as_completed(pool.submit_ready())
    for future in queue:
        pool.collect(future)
        for fut in pool.submit_ready():
            queue.add(fut)
    results = {scene_id: SceneTiles(scene_id, "done", kept=len(k)) for scene_id, k in keys.items()}
    pool.record(results)
    return results


def tile_scenes(
    work: str,
    cfg: TileConfig,
    client: Any,
    scene_ids: Sequence[str] | None = None,
    progress: Callable[[list[Any]], None] | None = None,
    captions: CaptionConfig | None = None,
) -> list[SceneTiles]:
    """Cut every completed scene into tiles with previews, geometry and optical views;
    with a caption model in `captions`, caption them as they come (CaptionPool)."""
    from distributed import as_completed

    cfg = on_device(cfg, _all_gpus(client))
    so = cfg.storage_options
    results: dict[str, SceneTiles] = {}
    pending: dict[Any, tuple[str, list[Window]]] = {}
    pool = CaptionPool(client, work, captions, so) if captions and captions.model else None
    resumed: list[tuple[str, Window, dict[str, Any] | None]] = []
    lineages: dict[str, dict[str, Any]] = {}
    for scene_id in scene_ids if scene_ids is not None else completed_scenes(work, so):
        res = results[scene_id] = SceneTiles(scene_id, "done")
        store = scene_store_url(work, scene_id)
        marker = tiles_marker_url(work, scene_id)
        try:  # {work} may fail here too (an S3 outage): the scene is left for a re-run
            lineage = {
                "scene_config": read_json(scene_marker_url(work, scene_id), so).get("config"),
                "tile_config": cfg.digest(),
            }
            made = read_json(marker, so) if exists(marker, so) else None
            if made is not None and made.get("lineage") == lineage and pool is None:
                recorded = ("kept", "refused", "optical_failed")
                results[scene_id] = SceneTiles(
                    scene_id, "skipped", **{k: v for k, v in made.items() if k in recorded}
                )
                continue
            ds = open_scene_store(store, so)
            windows = tile_windows(
                scene_id, ds.sizes["azimuth"], ds.sizes["range"], cfg.size, cfg.stride
            )
            stored = [(w, stored_summary(work, w, so)) for w in windows]
            old = [made.get("lineage")] if made is not None else []
            old += [d["lineage"] for _, d in stored if d is not None]
            if any(o != lineage for o in old):  # made under other settings: all made again
                res.rebuilt = stale_reason(next(o for o in old if o != lineage), lineage)
                remove_scene_tiles(work, scene_id, so)
                stored = [(w, None) for w in windows]
        except Exception as exc:
            res.status = "incomplete"
            res.errors.append({"key": scene_id, "reason": _reason(exc)[0]})
            continue
        lineages[scene_id] = lineage
        if pool is not None:
            pool.plan(scene_id, [w.key for w in windows], lineage)
        todo = []
        for w, done in stored:
            if done is not None:  # completed by an earlier run: recorded the same way
                res.record(done)
                resumed.append((scene_id, w, done))
            else:
                todo.append(w)
        for group in tile_groups(todo):
            fut = client.submit(
                make_tiles,
                store,
                work,
                group,
                cfg,
                lineage["scene_config"],
                pure=False,
                key=f"tiles-{group[0].key}-{len(group)}-{cfg.digest()}-{url_token(work)}",
            )
            pending[fut] = (scene_id, group)
    if progress is not None and pending:
        progress(list(pending))
    queue = as_completed(list(pending))
    if pool is not None:
        for scene_id, w, done in resumed:
            pool.tile_done(scene_id, w.key, done)
        for fut in pool.submit_ready():
            queue.add(fut)
    for future in queue:
        if pool is not None and pool.owns(future):
            pool.collect(future)
        else:
            scene_id, group = pending[future]
            res = results[scene_id]
            try:
                summaries = future.result()
            except Exception as exc:  # the whole task: every window of it failed
                reason = _reason(exc)[0]
                summaries = [{"key": w.key, "status": "error", "reason": reason} for w in group]
            finally:
                future.release()
            for summary in summaries:
                if summary["status"] == "error":
                    res.status = "incomplete"
                    res.errors.append({"key": summary["key"], "reason": summary["reason"]})
                else:
                    res.record(summary)
                if pool is not None:
                    ok = summary if summary["status"] != "error" else None
                    pool.tile_done(scene_id, summary["key"], ok)
        if pool is not None:
            for fut in pool.submit_ready():
                queue.add(fut)
    if pool is not None:
        pool.record(results)
    for res in results.values():
        res.refused.sort(key=lambda d: d["key"])
        res.optical_failed.sort(key=lambda d: d["key"])
        if res.status == "done":
            update_json(
                tiles_marker_url(work, res.scene_id),
                {
                    "scene_id": res.scene_id,
                    "kept": res.kept,
                    "refused": res.refused,
                    "optical_failed": res.optical_failed,
                    "lineage": lineages[res.scene_id],
                },
                so,
            )
    return [results[k] for k in sorted(results)]


@dataclass
class Release:
    """What a release run did: the manifest it wrote and how many shards it wrote now."""

    manifest: dict[str, Any]
    written: int
    reused: int
    errors: list[dict[str, Any]] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    """shards of an earlier plan that this one does not have, removed"""


def release_scenes(
    work: str,
    out: str,
    cfg: ReleaseConfig,
    client: Any,
    scene_ids: Sequence[str],
    storage_options: dict[str, Any] | None = None,
    catalogue: dict[str, Any] | None = None,
    progress: Callable[[list[Any]], None] | None = None,
) -> Release:
    """Plan splits and shards over the scenes' kept tiles and write the shards that are not
    committed yet under the same plan; then manifest.json and stats.json."""
    from distributed import as_completed

    so = storage_options or {}
    out_so = cfg.storage_options
    ids = sorted(scene_ids)
    index_futures = [
        client.submit(scene_index, work, sid, so, pure=False, key=f"index-{sid}-{url_token(work)}")
        for sid in ids
    ]
    index = dict(zip(ids, client.gather(index_futures), strict=True))
    samples = [
        SampleRef(sid, row["key"], row["pass_id"], row["label"])
        for sid in ids
        for row in index[sid]
    ]
    assignment = split_passes(samples, cfg.splits, cfg.balance)
    plan = shard_plan(samples, assignment, cfg)
    lineage = {f"{sid}/{row['key']}": row["lineage"] for sid in ids for row in index[sid]}
    digest = plan_digest(plan, cfg, lineage)
    scenes = {}
    for sid in ids:
        attrs = open_scene_store(scene_store_url(work, sid), so, chunks=None).attrs
        scenes[sid] = {"provenance": attrs.get("provenance")}
    markers: dict[str, dict[str, Any]] = {}
    pending: dict[Any, ShardSpec] = {}
    for spec in plan:
        done = committed(out, spec, digest, out_so)
        if done is not None:
            markers[spec.path] = done
            continue
        needed = {sid: scenes[sid] for sid in sorted({sid for sid, _ in spec.keys})}
        fut = client.submit(
            write_shard,
            spec,
            work,
            out,
            needed,
            digest,
            cfg,
            so,
            out_so,
            pure=False,
            key=f"shard-{spec.path}-{digest}-{url_token(work + ' ' + out)}",
        )
        pending[fut] = spec
    reused = len(markers)
    if progress is not None and pending:
        progress(list(pending))
    errors = []
    for future in as_completed(list(pending)):
        spec = pending[future]
        try:
            markers[spec.path] = future.result()
        except Exception as exc:
            errors.append({"key": spec.path, "reason": _reason(exc)[0], "stage": "release"})
        finally:
            future.release()
    # a shard task lost with its worker leaves its temporary file; its retry wrote the shard
    remove_partials(out, out_so)
    stale = prune_shards(out, plan, out_so) if not errors else []
    rows = [
        {"split": assignment[r["pass_id"]], "label": r["label"], "caption": r["caption"] or {}}
        for sid in ids
        for r in index[sid]
        if r["pass_id"] in assignment
    ]
    captioned = sum(1 for r in rows if r["caption"])
    manifest = {
        "dataset": "sarlo-dask release",
        "version": __version__,
        "release_config": cfg.digest(),
        "plan": digest,
        "complete": not errors,
        "samples": len(samples),
        "bytes": sum(m["bytes"] for m in markers.values()),
        "captions": {"captioned": captioned, "without": len(rows) - captioned},
        "splits": split_report(samples, assignment, cfg.splits),
        "shards": [
            {k: markers[s.path][k] for k in ("shard", "sha256", "bytes", "samples")}
            for s in plan
            if s.path in markers
        ],
        "catalogue": catalogue or {},
    }
    if not errors:  # written last: a manifest means every shard it lists is committed
        update_json(join(out, "stats.json"), dataset_stats(rows), out_so)
        update_json(join(out, "manifest.json"), manifest, out_so)
    return Release(manifest, len(pending) - len(errors), reused, errors, stale)


def _retries_of(reason: str) -> int:
    """Retries a reason reports ("... after 3 attempts": 2); 0 when it reports none."""
    found = re.search(r"after (\d+) attempts", reason)
    return int(found.group(1)) - 1 if found else 0


def _exception_of(reason: str) -> str:
    """The exception type a one-line reason starts with ("TypeError: ..."), else ""."""
    head = reason.removeprefix("caption: ").split(":", 1)[0]
    return head if head.isidentifier() and head[:1].isupper() else ""


@dataclass
class Build:
    """The outcome of each stage of one build."""

    scenes: list[SceneResult]
    tiles: list[SceneTiles]
    release: Release

    def failures(self) -> list[dict[str, Any]]:
        """Every scene or tile the build could not use, with stage and reason, sorted."""

        rows: list[dict[str, Any]] = [
            {
                "id": r.scene_id,
                "kind": "scene",
                "stage": r.stage,
                "reason": r.reason,
                "exception": r.exception,
                "url": redact(r.url),
            }
            for r in self.scenes
            if r.status == "failed"
        ]
        for t in self.tiles:
            if t.empty():
                first = t.refused[0]["reason"]
                rows.append(
                    {
                        "id": t.scene_id,
                        "kind": "scene",
                        "stage": "tiles",
                        "reason": f"no tile kept: all {len(t.refused)} windows refused ({first})",
                    }
                )
            for e in t.errors:
                stage = "captions" if e["reason"].startswith("caption:") else "tiles"
                rows.append(
                    {
                        "id": e["key"],
                        "kind": "tile",
                        "stage": stage,
                        "reason": e["reason"],
                        "retries": e.get("retries", 0),
                    }
                )
            for o in t.optical_failed:
                rows.append(
                    {"id": o["key"], "kind": "tile", "stage": "optical", "reason": o["reason"]}
                )
        for e in self.release.errors:
            rows.append(
                {"id": e["key"], "kind": "shard", "stage": "release", "reason": e["reason"]}
            )
        for row in rows:
            row.setdefault("exception", _exception_of(row["reason"]))
            row.setdefault("retries", _retries_of(row["reason"]))
        return sorted(rows, key=lambda r: (r["stage"], r["id"]))

    def exit_code(self) -> int:
        """0 every selected scene gave its samples, 3 some did, 4 no sample at all."""
        if not self.release.manifest["samples"]:
            return 4
        failed = any(r.status == "failed" for r in self.scenes)
        incomplete = any(t.status == "incomplete" or t.empty() for t in self.tiles)
        return 3 if failed or incomplete or self.release.errors else 0


def build_dataset(
    urls: Sequence[str],
    work: str,
    out: str,
    scfg: StandardizeConfig,
    tcfg: TileConfig,
    ccfg: CaptionConfig,
    rcfg: ReleaseConfig,
    client: Any,
    progress: Callable[[list[Any]], None] | None = None,
    say: Callable[[str], Any] = lambda line: None,
) -> Build:
    """The whole build on one cluster: standardize -> tile, pair, caption -> release.

    Every stage skips what {work} (or {out}) already holds, so the same call resumes."""

    for url, so in ((work, scfg.storage_options), (out, rcfg.storage_options)):
        if n := remove_partials(url, so):
            say(f"removed {n} half-written files an interrupted run left in {url}")
    say(f"[1/3] standardize {len(urls)} scenes")
    scenes = standardize_scenes(urls, work, scfg, client, progress=progress)
    say("")
    for r in scenes:
        say(r.line())
    ok = sorted({r.scene_id for r in scenes if r.status in ("done", "skipped")})
    what = "tiles and captions" if ccfg.model else "tiles (no caption model)"
    say(f"[2/3] {what} of {len(ok)} scenes")
    tiles = tile_scenes(work, tcfg, client, ok, progress=progress, captions=ccfg)
    say("")
    for t in tiles:
        say(t.line())
        for item in t.errors:
            say(f"FAILED {item['key']}: {item['reason']}")
    with_tiles = [t.scene_id for t in tiles if t.kept]
    catalogue = {
        "inputs": len(urls),
        "selected": ok,
        "refused": [
            {"url": redact(r.url), "scene_id": r.scene_id, "stage": r.stage, "reason": r.reason}
            for r in scenes
            if r.status == "failed"
        ],
    }
    say(f"[3/3] release of {len(with_tiles)} scenes to {redact(out)}")
    rel = release_scenes(
        work, out, rcfg, client, with_tiles, scfg.storage_options, catalogue, progress
    )
    say("")
    remove_partials(work, scfg.storage_options)  # temporary files of tasks lost with a worker
    result = Build(scenes, tiles, rel)
    rows = result.failures()
    text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows)
    report = join(work, "failures.jsonl")
    try:
        update_bytes(report, text.encode(), scfg.storage_options)
    except OSError as exc:  # {work} full or gone: the failures are still returned and printed
        say(f"cannot write {redact(report)} ({exception_line(exc)})")
    return result
