"""What the `sarlo` stage commands run: configuration, the checks before any cluster, the
cluster, the stage, and the summary a user reads."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, TypeVar

import typer

from sarlo_dask.driver.outcomes import Prefetch
from sarlo_dask.errors import redact
from sarlo_dask.storage_config import options_of, resolver
from sarlo_dask.store import Options, Store, join

T = TypeVar("T")


def configure(loader: Any, path: object, settings: dict[str, object]) -> Any:
    """A validated configuration, or a one-line error naming each bad setting and exit 2."""
    from pydantic import ValidationError

    try:
        return loader(path, **settings)
    except ValidationError as exc:
        from sarlo_dask.errors import redact_text

        locs = (redact_text(".".join(map(str, e["loc"]))) for e in exc.errors())
        bad = "; ".join(f"{loc}: {e['msg']}" for loc, e in zip(locs, exc.errors(), strict=True))
        where = f"{path}: " if path else ""
        typer.echo(f"error: {where}invalid settings: {bad}", err=True)
        raise typer.Exit(2) from None
    except (OSError, ValueError) as exc:
        typer.echo(f"error: {path}: {exc}", err=True)
        raise typer.Exit(2) from None


def _preflight(*checks: Callable[[], None]) -> None:
    """Run the checks made before any cluster starts; the first error: one line, exit 2."""
    from sarlo_dask.stages.preflight import UsageError

    try:
        for check in checks:
            check()
    except UsageError as exc:
        for line in str(exc).splitlines():
            typer.echo(f"error: {line}", err=True)
        raise typer.Exit(2) from None


def _common_checks(cluster: str, workers: int | None, work: str, so: Any) -> list[Any]:
    from sarlo_dask.stages import preflight

    return [
        lambda: preflight.check_workers(workers),
        preflight.check_plugins,
        lambda: preflight.check_cluster(cluster),
        lambda: preflight.check_writable(work, "--work", so),
    ]


class Bar:
    """The driver's progress as a bar (rich: live in a terminal; written to a file or a pipe,
    one line when the stage ends, no carriage-return floods). A bar ends when its units are
    all done; the next units start the next bar."""

    def __init__(self) -> None:
        self.bar: Any = None

    def __call__(self, done: int, added: int) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        if self.bar is None:
            columns = (BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
            self.bar = Progress(*columns, console=Console(highlight=False))
            self.task = self.bar.add_task("", total=added)
            self.bar.start()
        self.bar.update(self.task, completed=done, total=added)
        if done >= added:
            self.bar.stop()
            self.bar = None


@contextmanager
def _leased(*stores: tuple[str, dict[str, Any]]) -> Iterator[None]:
    """Hold the lease of each store ({work}, {out}) while the block runs: another command
    holding one stops this one here, before any cluster starts, with one line naming it and
    exit 5. SIGTERM ends the command as Ctrl-C does: the leases are removed."""
    import signal
    import sys
    import threading

    from sarlo_dask.driver.lease import LeaseHeld, command_line, held
    from sarlo_dask.store import Store

    with ExitStack() as stack:
        try:
            leases = held([Store.of(u, o) for u, o in stores], command_line(sys.argv[1:]))
            stack.enter_context(leases)
        except LeaseHeld as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(5) from None
        if threading.current_thread() is threading.main_thread():

            def terminate(signum: int, frame: Any) -> None:
                raise SystemExit(128 + signum)

            stack.callback(signal.signal, signal.SIGTERM, signal.signal(signal.SIGTERM, terminate))
        yield


def _on_cluster(cluster: str, workers: int | None, stage: Callable[[Any, Any], T]) -> T:
    """Run `stage(client, progress)` on a cluster, showing the dashboard link and progress."""
    from sarlo_dask.driver.cluster import cluster_client

    try:
        with cluster_client(cluster, n_workers=workers) as client:
            typer.echo(f"dashboard: {client.dashboard_link}")
            result = stage(client, Bar())
    except KeyboardInterrupt:  # Ctrl-C: one line saying how to resume, exit 130
        from sarlo_dask.driver.lease import command_line

        typer.echo(
            "\ninterrupted: what was committed is kept; to resume, run the same command "
            f"again: {command_line(sys.argv[1:])}",
            err=True,
        )
        raise typer.Exit(130) from None
    typer.echo("")
    return result


def _scene_urls(inputs: list[str], storage_options: Options) -> list[str]:
    """The scenes the INPUT arguments name; exit 2 for an input without any, 4 for none."""
    from sarlo_dask.io.catalog import expand_inputs

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
    from sarlo_dask.driver.outcomes import exit_code, summary
    from sarlo_dask.pipeline import standardize_scenes

    config = settings.pop("config", None)
    cfg = configure(load_config, config, settings)
    from sarlo_dask.stages.preflight import check_dem, check_inputs

    at_work = options_of(cfg, work)
    _preflight(*_common_checks(cluster, workers, work, at_work), lambda: check_dem(cfg))
    urls = _scene_urls(inputs, resolver(cfg))
    _preflight(lambda: check_inputs(urls, resolver(cfg)))
    t0 = time.perf_counter()
    with _leased((work, at_work)):
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
    ccfg = configure(load_caption_config, config, {k: v for k, v in caption.items() if v})
    cfg = configure(load_tile_config, config, settings)
    from sarlo_dask.stages.preflight import (
        check_caption_image,
        check_caption_model,
        check_caption_servers,
        check_optical,
    )

    _preflight(
        *_common_checks(cluster, workers, work, options_of(cfg, work)),
        lambda: check_optical(cfg.optical if cfg.optical_mode == "fetch" else None, cfg.zoom),
        lambda: check_caption_model(ccfg),
        lambda: check_caption_servers(ccfg),
        lambda: check_caption_image(cfg, ccfg),
    )
    t0 = time.perf_counter()
    with _leased((work, options_of(cfg, work))):
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
    work: str | None,
    out: str | None,
    cluster: str,
    workers: int | None,
    config: Path | None = None,
    optical: str | None = None,
    zoom: int | None = None,
    caption_model: str | None = None,
    caption_server: list[str] | None = None,
    dry_run: bool = False,
    dem: str | None = None,
    replace: bool = False,
    release: dict[str, Any] | None = None,
) -> int:
    from sarlo_dask.build_config import BuildConfig
    from sarlo_dask.pipeline import build_dataset

    flags = {
        "standardize": {"dem": dem},
        "tiles": {"optical": optical, "zoom": zoom},
        "captions": {"model": caption_model, **_servers(caption_server)},
        "release": release or {},
    }
    build: BuildConfig = configure(BuildConfig.load, config, flags)
    scfg, tcfg, ccfg, rcfg = build.stages()
    from sarlo_dask.stages.preflight import (
        build_stores,
        check_caption_image,
        check_caption_model,
        check_caption_servers,
        check_dem,
        check_inputs,
        check_landcover,
        check_optical,
        check_optical_coverage,
        check_protocol,
        check_release_inputs,
        check_writable,
    )

    optical_fetch = tcfg.optical if tcfg.optical_mode == "fetch" else None
    if dry_run:  # reads headers only: nothing written, no cluster, no --work/--out needed
        given = [(u, n) for u, n in ((work, "--work"), (out, "--out")) if u]
        _preflight(*(lambda u=u, n=n: check_protocol(u, n) for u, n in given))
        return _dry_run(_scene_urls(inputs, resolver(scfg)), scfg, tcfg)
    assert work is not None and out is not None, "sarlo build checks both are given"
    stores: list[Store] = []
    _preflight(lambda: stores.extend(build_stores(build, work, out)))
    (at_work, at_out), (work_store, out_store) = (s.options for s in stores), stores
    _preflight(
        *_common_checks(cluster, workers, work, at_work),
        lambda: check_writable(out, "--out", at_out),
        lambda: check_dem(scfg),
        lambda: check_landcover(tcfg),
        lambda: check_optical(optical_fetch, tcfg.zoom),
        lambda: check_caption_model(ccfg),
        lambda: check_caption_servers(ccfg),
        lambda: check_caption_image(tcfg, ccfg),
    )
    urls = _scene_urls(inputs, resolver(scfg))
    _preflight(
        lambda: check_inputs(urls, resolver(scfg)),
        lambda: check_release_inputs(out, urls, at_out, replace),
        lambda: check_optical_coverage(optical_fetch, tcfg, urls, scfg),
    )
    t0 = time.perf_counter()
    with _leased((work, at_work), (out, at_out)):
        result = _on_cluster(
            cluster,
            workers,
            lambda client, progress: build_dataset(
                urls, work_store, out_store, build, client, progress, typer.echo, replace
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

    from sarlo_dask.stages.scene_stage import preview_scene

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


def run_serve(
    model: str,
    name: str | None,
    host: str,
    port: int,
    max_batch: int,
    wait_ms: float,
    max_tokens: int,
    device: str,
    dtype: str,
    threads: int | None,
) -> None:
    """`sarlo serve`: the model checked (one line, exit 2) and loaded, then served."""
    from sarlo_dask.captions.backend import TransformersBackend, get_captioner
    from sarlo_dask.captions.serve import serve
    from sarlo_dask.config import CaptionConfig
    from sarlo_dask.stages.preflight import check_caption_model

    settings = {"model": model, "device": device, "dtype": dtype, "batch_size": max_batch}
    cfg = configure(lambda _, **kw: CaptionConfig(**kw), None, settings)
    _preflight(lambda: check_caption_model(cfg))
    if threads:
        import torch

        torch.set_num_threads(threads)
    get_captioner(cfg)  # loaded before the first request
    backend = TransformersBackend(cfg)
    serve(backend, name or model, host, port, max_batch, wait_ms / 1000, max_tokens)
