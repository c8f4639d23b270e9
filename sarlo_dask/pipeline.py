"""The build's stages over the cluster: each plans its units (typed keys), runs them through
the driver (sarlo_dask.driver, the only code that submits to the Dask client) and records
their typed outcomes as they complete; a unit's next step starts as soon as it completes.

One scene's failure is recorded with its reason and never stops the others; every stage
skips what {work} (or {out}) already holds under the same settings, so a re-run resumes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sarlo_dask import generations, release, resume
from sarlo_dask.caption_pool import CaptionPool
from sarlo_dask.captions.stats import dataset_stats
from sarlo_dask.cluster import all_gpus, install_quiet_refusals, worker_memory
from sarlo_dask.config import CaptionConfig, ReleaseConfig, StandardizeConfig, TileConfig, on_device
from sarlo_dask.driver import Done, Driver, Failed, Key, Outcome, Progress, Unit
from sarlo_dask.errors import exception_line, redact
from sarlo_dask.integrity import DamagedError, discard, one_per_unit
from sarlo_dask.outcomes import (
    Build,
    Failure,
    Prefetch,
    Release,
    SceneResult,
    SceneTiles,
    catalogue_of,
    transient_scenes,
    window_error,
)
from sarlo_dask.prefetch_stage import prefetch, with_xyz_cache
from sarlo_dask.scene_stage import plan_scene_store
from sarlo_dask.sicd import scene_id_from_url
from sarlo_dask.store import Store, canonical, sweep_staging
from sarlo_dask.tile_stage import make_tiles
from sarlo_dask.tiles import Window, tile_groups


def standardize_scenes(
    urls: Sequence[str],
    work: str | Store,
    cfg: StandardizeConfig,
    client: Any,
    progress: Progress | None = None,
) -> list[SceneResult]:
    """Standardize every scene into {work}/scenes/{scene_id}.zarr, skipping completed ones.
    A URL for `work` is a Store with the stage's storage options."""
    install_quiet_refusals(client)  # a refusal is one line here, not a worker traceback
    urls = [canonical(u) for u in urls]  # one unit per file, however its path is spelled
    cfg = on_device(cfg, all_gpus(client))
    work, digest = Store.of(work, cfg.storage_options), cfg.digest()
    selection = cfg.selection_digest()
    results: list[SceneResult] = []
    seen: dict[str, str] = {}
    memory = worker_memory(client)
    drive = Driver(client, progress)
    for url in urls:
        scene_id = scene_id_from_url(url)
        res = SceneResult(url, scene_id, "done", store=work.scene_store(scene_id))
        results.append(res)
        if scene_id in seen:
            res.fail(f"duplicate scene id {scene_id!r} (also {seen[scene_id]})", "ingest")
            continue
        seen[scene_id] = url
        key = Key("plan", scene_id, (digest, work.token))
        args = (url, scene_id, work, cfg, memory)
        # priority: ahead of the writes already sent, so the next scenes keep coming
        drive.add(Unit(key, plan_scene_store, args, tag=res, priority=1))
    made: dict[str, dict[str, Any]] = {}  # what the markers of the scenes written record
    for outcome in drive:
        res = outcome.unit.tag
        if isinstance(outcome, Failed):
            res.fail(outcome.error)
        elif outcome.unit.key.stage == "plan":  # the scene's store: reused, or written now
            plan = outcome.value
            res.rebuilt, res.damaged = plan.rebuilt, plan.damaged
            if plan.write is None:
                res.status = "skipped"
                continue
            made[res.scene_id] = {"digest": plan.digest, "settings": digest, "inputs": plan.inputs}
            made[res.scene_id]["selection"] = selection
            drive.add(Unit(Key("write", res.scene_id, (digest, work.token)), plan.write, tag=res))
        else:  # written: committed by its marker
            try:
                marker = resume.scene_marker(res, **made[res.scene_id], digests=outcome.value)
                work.write_json(work.scene_marker(res.scene_id), marker)
            except Exception as exc:
                res.fail(exc)
    return results


def tile_scenes(
    work: str | Store,
    cfg: TileConfig,
    client: Any,
    scene_ids: Sequence[str] | None = None,
    progress: Progress | None = None,
    captions: CaptionConfig | None = None,
    on_prefetch: Callable[[Prefetch], Any] | None = None,
) -> list[SceneTiles]:
    """Cut every completed scene into tiles with previews, geometry and optical views;
    with a caption model in `captions`, caption them as they come (CaptionPool).

    Optical images from an XYZ server are prefetched first (`prefetch_tiles`), each tile
    once; `on_prefetch` is given what that did."""
    work = Store.of(work, cfg.storage_options)
    cfg = with_xyz_cache(on_device(cfg, all_gpus(client)), work)
    ids = list(scene_ids) if scene_ids is not None else resume.completed_scenes(work)
    pool = CaptionPool(client, work, captions) if captions and captions.model else None
    results = {sid: SceneTiles(sid, "done") for sid in ids}
    lineages: dict[str, dict[str, Any]] = {}
    todo: dict[str, list[Window]] = {}
    with_captions = captions if pool is not None else None
    plans = Driver(client)
    for sid in ids:
        key = Key("tileplan", sid, (cfg.digest(), work.token))
        plans.add(Unit(key, resume.plan_scene_tiles, (work, sid, cfg, with_captions), tag=sid))
    for outcome in plans:
        sid = outcome.unit.tag
        if isinstance(outcome, Failed):  # {work} unreadable (an S3 outage): left for a re-run
            results[sid].error(Failure.of(outcome.error, sid, "scene", "tiles"))
            continue
        plan: resume.TilePlan = outcome.value
        if plan.skipped is not None:
            results[sid] = SceneTiles(sid, "skipped", **plan.skipped)
            continue
        res = results[sid]
        res.rebuilt, res.damaged, lineages[sid] = plan.rebuilt, plan.damaged, plan.lineage
        if plan.store_damaged():  # the build rebuilds the store, then cuts its tiles
            why = f"its store is damaged ({plan.damaged[-1].path}): rebuilt from its input"
            res.error(Failure(sid, "scene", "tiles", why))
            continue
        todo[sid] = [w for w, d in zip(plan.windows, plan.stored, strict=True) if d is None]
        for done in plan.stored:
            if done is not None:  # completed by an earlier run: recorded the same way
                res.record(done)
        if pool is not None:
            pool.plan(sid, [w.key for w in plan.windows], plan.captions)
            for w, done in zip(plan.windows, plan.stored, strict=True):
                if done is not None:
                    pool.tile_done(sid, w.key, done)
    prefetched = prefetch(work, cfg, client, todo, progress)
    if prefetched is not None and on_prefetch is not None:
        on_prefetch(prefetched)
    drive = Driver(client, progress)  # tiles once the prefetch is done; captions as they come
    for sid, windows in todo.items():
        made = lineages[sid]["scene_config"]
        for group in tile_groups(windows):
            key = Key("tiles", f"{group[0].key}-{len(group)}", (made, cfg.digest(), work.token))
            drive.add(Unit(key, make_tiles, (work, group, cfg, made), tag=(sid, group)))
    for unit in pool.ready_units() if pool is not None else []:
        drive.add(unit)
    for outcome in drive:
        if outcome.unit.key.stage == "caption" and pool is not None:
            pool.collect(outcome)
        else:
            _collect_tiles(outcome, results, pool)
        for unit in pool.ready_units() if pool is not None else []:
            drive.add(unit)
    if pool is not None:
        pool.record(results)
    for res in results.values():
        res.refused.sort(key=lambda d: d["key"])
        res.optical_failed.sort(key=lambda d: d["key"])
        if res.status == "done":
            marker = resume.tiles_marker(res, lineages[res.scene_id])
            try:
                work.update_json(work.tiles_marker(res.scene_id), marker)
            except OSError as exc:  # {work} full or gone: not committed, made again next run
                res.error(Failure.of(exc, res.scene_id, "scene", "tiles"))
    return [results[k] for k in sorted(results)]


def _collect_tiles(
    outcome: Outcome, results: dict[str, SceneTiles], pool: CaptionPool | None
) -> None:
    """Record a tile task's summaries (every window of it failed if the task did)."""
    scene_id, group = outcome.unit.tag
    if isinstance(outcome, Done):
        summaries = outcome.value
    else:
        summaries = [window_error(w.key, outcome.error) for w in group]
    for summary in summaries:
        ok = results[scene_id].record(summary)
        if pool is not None:
            pool.tile_done(scene_id, summary["key"], summary if ok else None)


def release_scenes(
    work: str | Store,
    out: str | Store,
    cfg: ReleaseConfig,
    client: Any,
    scene_ids: Sequence[str],
    storage_options: dict[str, Any] | None = None,
    catalogue: dict[str, Any] | None = None,
    progress: Progress | None = None,
    captions: str | None = None,
    say: Callable[[str], Any] = lambda line: None,
) -> Release:
    """Plan splits and shards over the scenes' kept tiles and write the release as the
    generation of its plan (sarlo_dask.generations): the shards not committed there yet, or
    damaged since, then index.parquet and stats.json; then {out}/manifest.json makes it the
    current release, and older generations are removed. A shard that fails publishes
    nothing. URLs for `work` and `out` are Stores with `storage_options` and the release's
    own; `captions`: the caption settings' digest whose records are released (None: none)."""
    work, out = Store.of(work, storage_options), Store.of(out, cfg.storage_options)
    indexes = Driver(client)
    for s in sorted(scene_ids):
        key = Key("index", s, (str(captions), work.token))
        indexes.add(Unit(key, release.scene_index, (work, s, captions), tag=s))
    indexed, unread = {}, []
    for outcome in indexes:
        if isinstance(outcome, Done):
            indexed[outcome.unit.tag] = outcome.value
        else:  # {work} unreadable (an S3 outage): nothing is released without the scene
            unread.append(Failure.of(outcome.error, outcome.unit.tag, "scene", "release"))
    if unread:
        why = f"{len(unread)} scenes' tiles could not be read"
        return release.unreleased(out, why, sorted(unread, key=lambda f: f.id))
    indexed = dict(sorted(indexed.items()))
    if damaged := [d for s in indexed.values() for d in s.damaged]:
        return release.damaged_release(out, damaged)  # rebuilt first, then released
    rp = release.release_plan(indexed, cfg)
    gen = generations.generation(out, rp.digest)  # written beside the current release
    drive = Driver(client, progress)
    for spec in rp.shards:
        needed = {
            s: {"provenance": rp.index[s].provenance, "captions": captions}
            | {"source_url": rp.sources[s]}
            for s, _ in spec.keys
        }
        args = (spec, work, gen, needed, rp.digest, cfg, cfg.check_committed)
        key = Key("shard", spec.path, (rp.digest, work.token, gen.token))
        drive.add(Unit(key, release.commit_shard, args, tag=spec.path))
    markers: dict[str, dict[str, Any]] = {}
    errors, damaged, written = [], [], 0
    for outcome in drive:
        path = outcome.unit.tag
        if isinstance(outcome, Failed):
            if isinstance(outcome.error, DamagedError):  # a sample's files: rebuilt, then again
                damaged += outcome.error.damage
            errors.append(Failure.of(outcome.error, path, "shard", "release"))
            continue
        done: release.ShardCommit = outcome.value
        markers[path], written = done.marker, written + done.written
        if done.damage:
            say(f"DAMAGED {gen.path(path)}: {done.damage}; rewriting the shard")
        generations.pause_point("shards", written)
    # a shard task lost with its worker leaves its temporary file; its retry wrote the shard
    out.remove_partials()
    sweep_staging()  # and an upload's staged file, on this host, of a process killed before
    if errors:  # the current release stays as it is (damaged samples: rebuilt, then again)
        rel = release.unreleased(out, f"{len(errors)} shards could not be written", errors)
        rel.damaged = damaged
        return rel
    manifest = release.release_manifest(rp, markers, cfg, True, catalogue or {})
    manifest["index"] = release.write_index(gen, rp, markers)
    gen.update_json(gen.path(generations.STATS), dataset_stats(rp.stats_rows()))
    manifest = generations.publish(out, generations.generation_name(rp.digest), manifest)
    stale = generations.prune(out, generations.generation_name(rp.digest))
    return Release(manifest, written, len(markers) - written, [], stale)


def build_dataset(
    urls: Sequence[str],
    work: str | Store,
    out: str | Store,
    scfg: StandardizeConfig,
    tcfg: TileConfig,
    ccfg: CaptionConfig,
    rcfg: ReleaseConfig,
    client: Any,
    progress: Progress | None = None,
    say: Callable[[str], Any] = lambda line: None,
    replace: bool = False,
) -> Build:
    """The whole build on one cluster: standardize -> tile, pair, caption -> release.

    Every stage skips what {work} (or {out}) already holds, so the same call resumes. What a
    pass finds damaged and cannot rebuild itself (a store its tiles are cut from, a sample's
    files) is removed and the pass runs again: each stage rebuilds it from its input. URLs
    for `work` and `out` are Stores with the standardize and release storage options. An
    {out} holding the release of other inputs is a UsageError unless `replace`."""
    from sarlo_dask.preflight import check_release_inputs

    work, out = Store.of(work, scfg.storage_options), Store.of(out, rcfg.storage_options)
    urls = [canonical(u) for u in urls]  # one unit per file, however its path is spelled
    check_release_inputs(out.url, urls, out.options, replace)
    for s in (work, out):
        if n := s.remove_partials():
            say(f"removed {n} half-written files an interrupted run left in {redact(s.url)}")
    configs = (scfg, tcfg, ccfg, rcfg)
    for _ in range(HEAL_PASSES):
        result = _build_pass(urls, work, out, configs, client, progress, say)
        if not (damage := result.pending_damage()):
            break
        for line in discard(work, damage):
            say(line)
    work.remove_partials()  # temporary files of tasks lost with a worker
    report = work.path("failures.jsonl")
    try:
        work.update_bytes(report, result.failures_jsonl())
    except OSError as exc:  # {work} full or gone: the failures are still returned and printed
        say(f"cannot write {redact(report)} ({exception_line(exc)})")
    return result


HEAL_PASSES = 3
"""passes of a build at most: each rebuilds what the one before found damaged"""


def _build_pass(
    urls: Sequence[str],
    work: Store,
    out: Store,
    configs: tuple[StandardizeConfig, TileConfig, CaptionConfig, ReleaseConfig],
    client: Any,
    progress: Progress | None,
    say: Callable[[str], Any],
) -> Build:
    """One pass of build_dataset: the three stages."""
    scfg, tcfg, ccfg, rcfg = configs
    say(f"[1/3] standardize {len(urls)} scenes")
    scenes = standardize_scenes(urls, work, scfg, client, progress=progress)
    lines = [d.line() for r in scenes for d in r.damaged]
    for line in ["", *lines, *(r.line() for r in scenes)]:
        say(line)
    ok = sorted({r.scene_id for r in scenes if r.status in ("done", "skipped")})
    say(f"[2/3] tiles{' and captions' * bool(ccfg.model)} of {len(ok)} scenes")
    prefetched: list[Prefetch] = []
    tiles = tile_scenes(work, tcfg, client, ok, progress, ccfg, on_prefetch=prefetched.append)
    say("")
    for p in prefetched:
        say(p.line())
        for d in p.damaged:
            say(d.line())
    for line in [d.line() for t in tiles for d in one_per_unit(t.damaged) if d.kind != "scene"]:
        say(line)
    for line in (x for t in tiles for x in t.lines()):
        say(line)
    keep = [t.scene_id for t in tiles if t.kept]
    say(f"[3/3] release of {len(keep)} scenes to {redact(out.url)}")
    captions, catalogue = ccfg.digest() if ccfg.model else None, catalogue_of(urls, ok, scenes)
    if unread := transient_scenes(scenes, tiles):  # a release without them would drop samples
        why = f"release left as it was: {len(unread)} scenes failed for a reason not their input's"
        rel = release.unreleased(out, f"{why} ({', '.join(unread[:3])})")
    else:
        rel = release_scenes(
            work, out, rcfg, client, keep, None, catalogue, progress, captions, say
        )
    say("")
    return Build(scenes, tiles, rel, prefetched[0] if prefetched else None)
