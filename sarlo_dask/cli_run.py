"""What the `sarlo` stage commands run: configuration, the checks before any cluster, the
cluster, the stage, and the summary a user reads."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer

from sarlo_dask.errors import redact
from sarlo_dask.outcomes import Prefetch
from sarlo_dask.store import join

T = TypeVar("T")


def _configure(loader: Any, path: object, settings: dict[str, object]) -> Any:
    """A validated configuration, or a one-line error naming each bad setting and exit 2."""
    from pydantic import ValidationError

    try:
        return loader(path, **settings)
    except ValidationError as exc:
        bad = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        where = f"{path}: " if path else ""
        typer.echo(f"error: {where}invalid settings: {bad}", err=True)
        raise typer.Exit(2) from None
    except (OSError, ValueError) as exc:
        typer.echo(f"error: {path}: {exc}", err=True)
        raise typer.Exit(2) from None


def _preflight(*checks: Callable[[], None]) -> None:
    """Run the checks made before any cluster starts; the first error: one line, exit 2."""
    from sarlo_dask.preflight import UsageError

    try:
        for check in checks:
            check()
    except UsageError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def _common_checks(cluster: str, workers: int | None, work: str, so: Any) -> list[Any]:
    from sarlo_dask import preflight

    return [
        lambda: preflight.check_workers(workers),
        lambda: preflight.check_cluster(cluster),
        lambda: preflight.check_writable(work, "--work", so),
    ]


def _on_cluster(cluster: str, workers: int | None, stage: Callable[[Any, Any], T]) -> T:
    """Run `stage(client, progress)` on a cluster, showing the dashboard link and progress."""
    from distributed import progress

    from sarlo_dask.cluster import make_client

    with make_client(cluster, n_workers=workers) as client:
        typer.echo(f"dashboard: {client.dashboard_link}")
        result = stage(client, lambda futures: progress(futures))
    typer.echo("")
    return result


def _scene_urls(inputs: list[str], storage_options: dict[str, Any]) -> list[str]:
    """The scenes the INPUT arguments name; exit 2 for an input without any, 4 for none."""
    from sarlo_dask.catalog import expand_inputs

    try:
        urls = expand_inputs(inputs, storage_options)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if not urls:
        typer.echo("error: no scenes found in the inputs", err=True)
        raise typer.Exit(4)
    return urls


def run_standardize(
    inputs: list[str], work: str, cluster: str, workers: int | None, **settings: object
) -> int:
    from sarlo_dask.config import load_config
    from sarlo_dask.outcomes import exit_code, summary
    from sarlo_dask.pipeline import standardize_scenes

    config = settings.pop("config", None)
    cfg = _configure(load_config, config, settings)
    from sarlo_dask.preflight import check_dem

    _preflight(*_common_checks(cluster, workers, work, cfg.storage_options), lambda: check_dem(cfg))
    urls = _scene_urls(inputs, cfg.storage_options)
    t0 = time.perf_counter()
    results = _on_cluster(
        cluster,
        workers,
        lambda client, progress: standardize_scenes(urls, work, cfg, client, progress=progress),
    )
    for r in results:
        typer.echo(r.line(), err=r.status == "failed")
    s = summary(results)
    c = s["counts"]
    typer.echo(
        f"{c['done']} standardized, {c['skipped']} already done, {c['failed']} failed "
        f"in {time.perf_counter() - t0:.1f} s"
    )
    return exit_code(results)


def _servers(urls: list[str] | None) -> dict[str, object]:
    """--caption-server flags as caption settings (none: the config's)."""
    return {"backend": "openai", "servers": tuple(urls)} if urls else {}


def _say_prefetch(p: Prefetch) -> None:
    typer.echo(p.line())


def run_tiles(work: str, cluster: str, workers: int | None, **settings: object) -> int:
    from sarlo_dask.config import load_caption_config, load_tile_config
    from sarlo_dask.pipeline import tile_scenes

    config = settings.pop("config", None)
    caption = {
        "model": settings.pop("caption_model", None),
        "image": settings.pop("caption_image", None),
        "batch_size": settings.pop("caption_batch", None),
        **_servers(settings.pop("caption_server", None)),  # type: ignore[arg-type]
    }
    ccfg = _configure(load_caption_config, config, {k: v for k, v in caption.items() if v})
    cfg = _configure(load_tile_config, config, settings)
    from sarlo_dask.preflight import check_caption_image, check_caption_servers, check_optical

    _preflight(
        *_common_checks(cluster, workers, work, cfg.storage_options),
        lambda: check_optical(cfg.optical if cfg.optical_mode == "fetch" else None, cfg.zoom),
        lambda: check_caption_servers(ccfg),
        lambda: check_caption_image(cfg, ccfg),
    )
    t0 = time.perf_counter()
    results = _on_cluster(
        cluster,
        workers,
        lambda client, progress: tile_scenes(
            work, cfg, client, progress=progress, captions=ccfg, on_prefetch=_say_prefetch
        ),
    )
    for r in results:
        typer.echo(r.line())
        for item in r.errors:
            typer.echo(f"FAILED {item.id}: {item.reason}", err=True)
    kept = sum(r.kept for r in results)
    typer.echo(f"{kept} tiles from {len(results)} scenes in {time.perf_counter() - t0:.1f} s")
    if not results:
        typer.echo("error: no standardized scenes in the work store", err=True)
        return 4
    return 0 if all(r.status in ("done", "skipped") for r in results) else 3


def run_build(
    inputs: list[str],
    work: str,
    out: str,
    cluster: str,
    workers: int | None,
    config: Path | None = None,
    optical: str | None = None,
    zoom: int | None = None,
    include_optical: bool | None = None,
    caption_model: str | None = None,
    caption_server: list[str] | None = None,
    dry_run: bool = False,
    dem: str | None = None,
    replace: bool = False,
) -> int:
    from sarlo_dask.config import (
        load_caption_config,
        load_config,
        load_release_config,
        load_tile_config,
    )
    from sarlo_dask.pipeline import build_dataset

    scfg = _configure(load_config, config, {"dem": dem})
    tcfg = _configure(load_tile_config, config, {"optical": optical, "zoom": zoom})
    ccfg = _configure(
        load_caption_config, config, {"model": caption_model, **_servers(caption_server)}
    )
    rcfg = _configure(load_release_config, config, {"include_optical": include_optical})
    from sarlo_dask.preflight import (
        check_caption_image,
        check_caption_servers,
        check_dem,
        check_optical,
        check_protocol,
        check_release_inputs,
        check_writable,
    )

    if dry_run:  # reads headers only: nothing written, no cluster
        _preflight(lambda: check_protocol(work, "--work"), lambda: check_protocol(out, "--out"))
        return _dry_run(_scene_urls(inputs, scfg.storage_options), scfg, tcfg)
    _preflight(
        *_common_checks(cluster, workers, work, scfg.storage_options),
        lambda: check_writable(out, "--out", rcfg.storage_options),
        lambda: check_dem(scfg),
        lambda: check_optical(tcfg.optical if tcfg.optical_mode == "fetch" else None, tcfg.zoom),
        lambda: check_caption_servers(ccfg),
        lambda: check_caption_image(tcfg, ccfg),
    )
    urls = _scene_urls(inputs, scfg.storage_options)
    _preflight(lambda: check_release_inputs(out, urls, rcfg.storage_options, replace))
    t0 = time.perf_counter()
    result = _on_cluster(
        cluster,
        workers,
        lambda client, progress: build_dataset(
            urls, work, out, scfg, tcfg, ccfg, rcfg, client, progress, typer.echo, replace
        ),
    )
    rel = result.release
    m = rel.manifest
    for item in rel.errors:
        typer.echo(f"FAILED {item.id}: {item.reason}", err=True)
    split_counts = ", ".join(f"{k} {v['samples']}" for k, v in m["splits"].items())
    typer.echo(
        f"{m['samples']} samples ({split_counts}) in {len(m['shards'])} shards "
        f"({rel.written} written, {rel.reused} already committed"
        + (f", {len(rel.removed)} of an earlier plan removed" if rel.removed else "")
        + "), "
        f"{m['captions']['captioned']} captioned, in {time.perf_counter() - t0:.1f} s"
    )
    failures = result.failures()
    if failures:
        report = redact(join(work, "failures.jsonl"))
        typer.echo(f"{len(failures)} scenes / tiles left out ({report}):", err=True)
        for row in failures[:20]:
            typer.echo(f"  {row['stage']:10s} {row['id']}: {row['reason']}", err=True)
        if len(failures) > 20:
            typer.echo(f"  ... and {len(failures) - 20} more", err=True)
    if not m["samples"]:
        typer.echo("error: no samples could be built", err=True)
    return result.exit_code()


def _dry_run(urls: list[str], scfg: Any, tcfg: Any) -> int:
    """Print what a build would select and refuse, and the tiles of each scene, reading only
    headers (in threads: a few small range requests per scene); 0 if any is selected, else 4."""
    from concurrent.futures import ThreadPoolExecutor

    from sarlo_dask.scene_stage import preview_scene

    with ThreadPoolExecutor(16) as pool:
        views = list(pool.map(lambda u: preview_scene(u, scfg, tcfg.size, tcfg.stride), urls))
    seen: set[str] = set()
    for v in views:
        dup = v.scene_id in seen and not v.reason
        seen.add(v.scene_id)
        dup_line = f"refused  {redact(v.url)}: duplicate scene id {v.scene_id!r}"
        typer.echo(dup_line if dup else v.line())
    ok = [v for v in views if not v.reason]
    typer.echo(
        f"dry run: {len(ok)} of {len(views)} scenes selected, {sum(v.tiles for v in ok)} "
        f"tiles of {tcfg.size} px at stride {tcfg.stride} (before the validity check)"
    )
    return 0 if ok else 4
