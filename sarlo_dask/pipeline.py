"""The build's stages over the cluster: each plans its units (typed keys), runs them through
the driver (sarlo_dask.driver.loop, the only code that submits to the Dask client) and records
their typed outcomes as they complete; a unit's next step starts as soon as it completes.

One scene's failure is recorded with its reason and never stops the others; every stage
skips what {work} (or {out}) already holds under the same settings, so a re-run resumes.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

from sarlo_dask.build_config import BuildConfig
from sarlo_dask.captions.stats import dataset_stats
from sarlo_dask.config import CaptionConfig, ReleaseConfig, StandardizeConfig, TileConfig
from sarlo_dask.driver.integrity import DamagedError, discard, one_per_unit
from sarlo_dask.driver.loop import Done, Driver, Failed, Key, Progress, Unit
from sarlo_dask.driver.outcomes import (
    Build,
    Failure,
    Prefetch,
    Release,
    SceneResult,
    SceneTiles,
    catalogue_of,
    transient_scenes,
)
from sarlo_dask.errors import exception_line, redact
from sarlo_dask.io import generations, writers
from sarlo_dask.io.index import located_rows
from sarlo_dask.io.writers import ReleaseView
from sarlo_dask.release import publish
from sarlo_dask.release.scenes import scene_index
from sarlo_dask.stages import resume
from sarlo_dask.stages.scene_run import SceneRun
from sarlo_dask.stages.tile_run import TileRun
from sarlo_dask.storage_config import section_store
from sarlo_dask.store import Store, canonical, sweep_staging


def standardize_scenes(
    urls: Sequence[str],
    work: str | Store,
    cfg: StandardizeConfig,
    client: Any,
    progress: Progress | None = None,
) -> list[SceneResult]:
    """Standardize every scene into {work}/scenes/{scene_id}.zarr, skipping completed ones.
    A URL for `work` is a Store with the stage's storage options."""
    run = SceneRun(urls, section_store(work, cfg), cfg, client)
    drive = Driver(client, progress)
    run.start(drive)
    for outcome in drive:
        run.collect(outcome, drive)
    return run.results


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
    work = section_store(work, cfg)
    run = TileRun(work, cfg, client, captions)
    drive = Driver(client, progress)
    for sid in scene_ids if scene_ids is not None else resume.completed_scenes(work):
        run.add_scene(sid, drive)
    for outcome in drive:
        run.collect(outcome, drive)
    tiles = run.finish()
    if (prefetched := run.prefetched()) is not None and on_prefetch is not None:
        on_prefetch(prefetched)
    return tiles


def stream_scenes(
    urls: Sequence[str],
    work: Store,
    configs: tuple[StandardizeConfig, TileConfig, CaptionConfig],
    client: Any,
    progress: Progress | None = None,
) -> tuple[list[SceneResult], list[SceneTiles], Prefetch | None]:
    """Standardize the scenes and cut each one's tiles (captioned, with a caption model) as
    soon as its store commits: one driver for both stages, no barrier between them."""
    scfg, tcfg, ccfg = configs
    scenes = SceneRun(urls, work, scfg, client)
    tiles = TileRun(work, tcfg, client, ccfg)
    drive = Driver(client, progress)
    scenes.start(drive)
    for outcome in drive:
        if outcome.unit.key.stage not in SceneRun.STAGES:
            tiles.collect(outcome, drive)
        elif (committed := scenes.collect(outcome, drive)) is not None:
            tiles.add_scene(committed, drive)
    return scenes.results, tiles.finish(), tiles.prefetched()


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
    generation of its plan (sarlo_dask.io.generations): the shards not committed there yet, or
    damaged since, then index.parquet and stats.json; then {out}/manifest.json makes it the
    current release, and older generations are removed. A shard that fails publishes
    nothing. URLs for `work` and `out` are Stores with `storage_options` and the release's
    own; `captions`: the caption settings' digest whose records are released (None: none)."""
    work, out = Store.of(work, storage_options), section_store(out, cfg)
    indexes = Driver(client)
    for s in sorted(scene_ids):
        key = Key("index", s, (str(captions), work.token))
        indexes.add(Unit(key, scene_index, (work, s, captions), tag=s))
    indexed, unread = {}, []
    for outcome in indexes:
        if isinstance(outcome, Done):
            indexed[outcome.unit.tag] = outcome.value
        else:  # {work} unreadable (an S3 outage): nothing is released without the scene
            unread.append(Failure.of(outcome.error, outcome.unit.tag, "scene", "release"))
    if unread:
        why = f"{len(unread)} scenes' tiles could not be read"
        return publish.unreleased(out, why, sorted(unread, key=lambda f: f.id))
    indexed = dict(sorted(indexed.items()))
    if damaged := [d for s in indexed.values() for d in s.damaged]:
        return publish.damaged_release(out, damaged)  # rebuilt first, then released
    rp = publish.release_plan(indexed, cfg)
    gen = generations.generation(out, rp.digest)  # written beside the current release
    drive = Driver(client, progress)
    for spec in rp.shards:
        needed = {
            s: {"provenance": rp.index[s].provenance, "captions": captions}
            | {"source_url": rp.sources[s]}
            | {"samples": rp.extras(s, [k for sid, k in spec.keys if sid == s])}
            for s, _ in spec.keys
        }
        args = (spec, work, gen, needed, rp.digest, cfg, cfg.check_committed)
        key = Key("shard", spec.path, (rp.digest, work.token, gen.token))
        drive.add(Unit(key, publish.commit_shard, args, tag=spec.path))
    markers: dict[str, dict[str, Any]] = {}
    errors, damaged, written = [], [], 0
    for outcome in drive:
        path = outcome.unit.tag
        if isinstance(outcome, Failed):
            if isinstance(outcome.error, DamagedError):  # a sample's files: rebuilt, then again
                damaged += outcome.error.damage
            errors.append(Failure.of(outcome.error, path, "shard", "release"))
            continue
        done: publish.ShardCommit = outcome.value
        markers[path], written = done.marker, written + done.written
        if done.damage:
            say(f"DAMAGED {gen.path(path)}: {done.damage}; rewriting the shard")
        generations.pause_point("shards", written)
    # a shard task lost with its worker leaves its temporary file; its retry wrote the shard
    out.remove_partials()
    sweep_staging()  # and an upload's staged file, on this host, of a process killed before
    if errors:  # the current release stays as it is (damaged samples: rebuilt, then again)
        rel = publish.unreleased(out, f"{len(errors)} shards could not be written", errors)
        rel.damaged = damaged
        return rel
    manifest = publish.release_manifest(rp, markers, cfg, True, catalogue or {})
    rows = located_rows(rp.rows, rp.assignment, markers)
    manifest["index"] = publish.write_index(gen, rows)
    if cfg.writers:  # the files of the sample writers the release names, beside its index
        try:
            read = writers.member_reader(gen, markers)
            view = ReleaseView(rows, markers, copy.deepcopy(manifest), read)
            manifest["files"] = writers.write_files(gen, cfg.writers, view)
        except Exception as exc:  # a writer's fault: the current release stays as it is
            which = exc.kind if isinstance(exc, writers.WriterFailed) else "writers"
            failed = [Failure.of(exc, which, "file", "release")]
            return publish.unreleased(out, "the sample writers failed", failed)
    stats = dataset_stats(rp.stats_rows()) | {"ground": rp.ground.report(cfg.strict_splits)}
    gen.update_json(gen.path(generations.STATS), stats)
    manifest = generations.publish(out, generations.generation_name(rp.digest), manifest)
    stale = generations.prune(out, generations.generation_name(rp.digest))
    return Release(manifest, written, len(markers) - written, [], stale)


def build_dataset(
    urls: Sequence[str],
    work: str | Store,
    out: str | Store,
    config: BuildConfig,
    client: Any,
    progress: Progress | None = None,
    say: Callable[[str], Any] = lambda line: None,
    replace: bool = False,
) -> Build:
    """The whole build on one cluster: standardize -> tile, pair, caption -> release.

    Every stage skips what {work} (or {out}) already holds, so the same call resumes. What a
    pass finds damaged and cannot rebuild itself (a store its tiles are cut from, a sample's
    files) is removed and the pass runs again: each stage rebuilds it from its input. URLs
    for `work` and `out` are opened once, as `config` says (BuildConfig.work_store,
    out_store). An {out} holding the release of other inputs is a UsageError unless
    `replace`."""
    from sarlo_dask.stages.preflight import check_release_inputs

    work, out = config.work_store(work), config.out_store(out)
    urls = [canonical(u) for u in urls]  # one unit per file, however its path is spelled
    check_release_inputs(out.url, urls, out.options, replace)
    for s in (work, out):
        if n := s.remove_partials():
            say(f"removed {n} half-written files an interrupted run left in {redact(s.url)}")
    for _ in range(HEAL_PASSES):
        result = _build_pass(urls, work, out, config, client, progress, say)
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
    config: BuildConfig,
    client: Any,
    progress: Progress | None,
    say: Callable[[str], Any],
) -> Build:
    """One pass of build_dataset: the three stages."""
    scfg, tcfg, ccfg, rcfg = config.stages()
    what = f"tiles{' and captions' * bool(ccfg.model)}"
    say(f"[1/3] standardize {len(urls)} scenes ({what} of each as soon as its store commits)")
    scenes, tiles, prefetched = stream_scenes(urls, work, (scfg, tcfg, ccfg), client, progress)
    lines = [d.line() for r in scenes for d in r.damaged]
    for line in ["", *lines, *(r.line() for r in scenes)]:
        say(line)
    ok = sorted({r.scene_id for r in scenes if r.status in ("done", "skipped")})
    say(f"[2/3] {what} of {len(ok)} scenes")
    say("")
    if prefetched is not None:
        say(prefetched.line())
        for d in prefetched.damaged:
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
        rel = publish.unreleased(out, f"{why} ({', '.join(unread[:3])})")
    else:
        rel = release_scenes(
            work, out, rcfg, client, keep, None, catalogue, progress, captions, say
        )
    say("")
    return Build(scenes, tiles, rel, prefetched)
