"""The `sarlo` command."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

T = TypeVar("T")

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Build SAR-optical-text datasets from SICD scenes on a Dask cluster.",
)

ClusterOpt = Annotated[
    str,
    typer.Option(
        help="local, local-cuda, slurm[:JOBQUEUE_YAML], kubernetes[:DASKCLUSTER_YAML], "
        "tcp://HOST:PORT or scheduler-file:PATH"
    ),
]


@app.command()
def simulate(
    out: Annotated[Path, typer.Argument(help="SICD NITF to write (truth goes to OUT.truth.json)")],
    rows: int = typer.Option(2048, help="range samples"),
    cols: int = typer.Option(2048, help="azimuth samples"),
    spacing: float = typer.Option(0.3, help="native spacing, m (both axes)"),
    oversampling: float = typer.Option(1.25),
    weighting: str = typer.Option("TAYLOR", help="UNIFORM, TAYLOR or HAMMING"),
    skew: float = typer.Option(0.0, help="constant azimuth DeltaKCOA, cycles/m"),
    skew_rate: float = typer.Option(0.0, help="azimuth DeltaKCOA change per metre of azimuth"),
    targets: int = typer.Option(9),
    seed: int = typer.Option(0),
    lat: float = typer.Option(48.7128),
    lon: float = typer.Option(2.2075),
    like: Path | None = typer.Option(
        None,
        help="a real SICD XML (or NITF) whose geometry, grid, skew, weighting, radiometry and "
        "image formation to keep: ROWS x COLS on its SCP, in its pixel type",
    ),
) -> None:
    """Write a synthetic SICD with point targets at known ground positions: a spotlight PFA
    of the given spacing, or (--like) the geometry of a real product."""
    from sarlo_dask.simulate import SimulationSpec, simulate_scene

    if like is not None:
        _simulate_like(like, out, rows, cols, seed, targets)
        return

    spec = SimulationSpec(
        rows=rows,
        cols=cols,
        row_spacing=spacing,
        col_spacing=spacing,
        oversampling=oversampling,
        weighting=weighting,
        col_deltakcoa=((skew, skew_rate),),
        n_targets=targets,
        seed=seed,
        lat=lat,
        lon=lon,
    )
    try:
        truth = simulate_scene(out, spec)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"wrote {out} ({rows} x {cols} at {spacing} m, {len(truth['targets'])} targets)")


def _simulate_like(like: Path, out: Path, rows: int, cols: int, seed: int, targets: int) -> None:
    from sarlo_dask.errors import SceneError
    from sarlo_dask.sicd import read_sicd_meta
    from sarlo_dask.simulate_like import simulate_like

    try:
        if like.suffix.lower() in (".nitf", ".ntf"):
            xml = read_sicd_meta(str(like)).to_xml_string(tag="SICD")
        else:
            xml = like.read_text(encoding="utf-8")
        truth = simulate_like(xml, out, rows, cols, seed=seed, n_targets=targets)
    except (OSError, ValueError, SceneError) as exc:
        typer.echo(f"error: --like {like}: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(
        f"wrote {out} ({rows} x {cols} like {like.name}, {truth['pixel_type']}, "
        f"{len(truth['targets'])} targets)"
    )


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


def _run_standardize(
    inputs: list[str], work: str, cluster: str, workers: int | None, **settings: object
) -> int:
    from sarlo_dask.config import load_config
    from sarlo_dask.pipeline import exit_code, standardize_scenes, summary

    config = settings.pop("config", None)
    cfg = _configure(load_config, config, settings)
    _preflight(*_common_checks(cluster, workers, work, cfg.storage_options))
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


@app.command()
def standardize(
    inputs: Annotated[list[str], typer.Argument(help="SICD files, folders, globs, s3:// prefixes")],
    work: Annotated[str, typer.Option(help="work store URL (local folder, s3://...)")],
    spacing: float | None = typer.Option(None, help="target spacing, m (default 0.8)"),
    config: Path | None = typer.Option(None, help="YAML configuration"),
    min_size: int | None = typer.Option(None, help="smallest output size, px (default 1024)"),
    cluster: ClusterOpt = "local",
    workers: int | None = typer.Option(None, help="local workers (default: CPU count, max 8)"),
) -> None:
    """Resample SICD scenes to SPACING in slant range, with geolocation, into WORK/scenes/."""
    code = _run_standardize(
        inputs, work, cluster, workers, spacing=spacing, config=config, min_size=min_size
    )
    raise typer.Exit(code)


def _run_tiles(work: str, cluster: str, workers: int | None, **settings: object) -> int:
    from sarlo_dask.config import load_caption_config, load_tile_config
    from sarlo_dask.pipeline import tile_scenes

    config = settings.pop("config", None)
    caption = {
        "model": settings.pop("caption_model", None),
        "image": settings.pop("caption_image", None),
        "batch_size": settings.pop("caption_batch", None),
    }
    ccfg = _configure(load_caption_config, config, {k: v for k, v in caption.items() if v})
    cfg = _configure(load_tile_config, config, settings)
    from sarlo_dask.preflight import check_optical

    _preflight(
        *_common_checks(cluster, workers, work, cfg.storage_options),
        lambda: check_optical(cfg.optical, cfg.zoom),
    )
    t0 = time.perf_counter()
    results = _on_cluster(
        cluster,
        workers,
        lambda client, progress: tile_scenes(work, cfg, client, progress=progress, captions=ccfg),
    )
    for r in results:
        typer.echo(r.line())
        for item in r.errors:
            typer.echo(f"FAILED {item['key']}: {item['reason']}", err=True)
    kept = sum(r.kept for r in results)
    typer.echo(f"{kept} tiles from {len(results)} scenes in {time.perf_counter() - t0:.1f} s")
    if not results:
        typer.echo("error: no standardized scenes in the work store", err=True)
        return 4
    return 0 if all(r.status in ("done", "skipped") for r in results) else 3


@app.command()
def tiles(
    work: Annotated[str, typer.Option(help="work store URL (holds scenes/ from standardize)")],
    optical: str | None = typer.Option(
        None, help="XYZ URL template {z}/{x}/{y}, GeoTIFF or folder of XYZ tiles"
    ),
    zoom: int | None = typer.Option(None, help="XYZ zoom level (default 19)"),
    size: int | None = typer.Option(None, help="tile edge, px (default 1024)"),
    stride: int | None = typer.Option(None, help="tile step, px (default 512)"),
    preview_format: str | None = typer.Option(None, help="png (default) or jpg"),
    preview_scale: str | None = typer.Option(None, help="auto (default), amplitude or sigma0"),
    speckle_filter: bool | None = typer.Option(None, help="also a refined-Lee preview"),
    fit_grid: int | None = typer.Option(None, help="0: affine from the 4 corners; n: n x n"),
    save_mosaic: bool | None = typer.Option(None, help="also each tile's mosaic as GeoTIFF"),
    tile_cache: str | None = typer.Option(None, help="folder for downloaded XYZ tiles"),
    caption_model: str | None = typer.Option(
        None, help="caption model (local folder or hub id); none: no captions"
    ),
    caption_image: str | None = typer.Option(None, help="optical (default) or sar"),
    caption_batch: int | None = typer.Option(None, help="tiles per model call (default 8)"),
    config: Path | None = typer.Option(
        None, help="YAML configuration (`tiles:` and `captions:` sections)"
    ),
    cluster: ClusterOpt = "local",
    workers: int | None = typer.Option(None),
) -> None:
    """Cut standardized scenes into tiles with previews, geometry and optical views."""
    raise typer.Exit(
        _run_tiles(
            work,
            cluster,
            workers,
            optical=optical,
            zoom=zoom,
            size=size,
            stride=stride,
            preview_format=preview_format,
            preview_scale=preview_scale,
            speckle_filter=speckle_filter,
            fit_grid=fit_grid,
            save_mosaic=save_mosaic,
            tile_cache=tile_cache,
            caption_model=caption_model,
            caption_image=caption_image,
            caption_batch=caption_batch,
            config=config,
        )
    )


optical_app = typer.Typer(no_args_is_help=True, help="Optical views of released samples.")
app.add_typer(optical_app, name="optical")


@optical_app.command("reconstruct")
def optical_reconstruct(
    sample: Annotated[str, typer.Argument(help="a sample's meta.json (path or URL)")],
    source: str | None = typer.Option(
        None,
        help="the optical source the build used: XYZ template, GeoTIFF, folder, or the "
        "folder:PATH / geotiff:PATH meta.json records (default: meta.json's, names found "
        "from the current folder)",
    ),
    out: str | None = typer.Option(None, help="PNG to write (default: beside the sample)"),
    tile_cache: str = typer.Option("", help="XYZ tile cache (default ~/.cache/sarlo/tiles)"),
    timeout: float = typer.Option(5.0, help="seconds per XYZ request"),
    retries: int = typer.Option(1, help="retries per XYZ tile; a tile still failing stops"),
) -> None:
    """Rebuild a sample's warped optical image from its meta.json and the optical source.

    The build's image pixel for pixel, or no file: exit 4 when the source does not give it.
    """
    # exit 4: no image in the sample, or the source's tiles are not the build's (unreachable,
    # failing, empty, missing tiles the build had); 2: a bad sample, source spec or --out
    from sarlo_dask.optical.reconstruct import (
        RECONSTRUCT_HTTP,
        ReconstructError,
        load_sample,
        reconstruct_optical,
        resolve_source,
    )
    from sarlo_dask.store import filesystem
    from sarlo_dask.tiles import encode_image

    http = {**RECONSTRUCT_HTTP, "timeout": timeout, "retries": max(retries, 0)}
    try:
        meta = load_sample(sample)
        src = resolve_source(meta, source, cache_dir=tile_cache, **http)
        image = reconstruct_optical(meta, src)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except ReconstructError as exc:
        typer.echo(f"error: {sample}: {exc}", err=True)
        raise typer.Exit(4) from None
    base = sample.removesuffix(".meta.json") if sample.endswith(".meta.json") else sample
    target = out or f"{base}.optic.rebuilt.png"
    data = encode_image(image, "png")
    try:
        ofs, opath = filesystem(target)
        with ofs.open(opath, "wb") as f:
            f.write(data)
    except OSError as exc:
        typer.echo(f"error: {target}: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"wrote {target}")


def _run_build(
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
) -> int:
    from sarlo_dask.config import (
        load_caption_config,
        load_config,
        load_release_config,
        load_tile_config,
    )
    from sarlo_dask.pipeline import build_dataset

    scfg = _configure(load_config, config, {})
    tcfg = _configure(load_tile_config, config, {"optical": optical, "zoom": zoom})
    ccfg = _configure(load_caption_config, config, {"model": caption_model})
    rcfg = _configure(load_release_config, config, {"include_optical": include_optical})
    from sarlo_dask.preflight import check_optical, check_writable

    _preflight(
        *_common_checks(cluster, workers, work, scfg.storage_options),
        lambda: check_writable(out, "--out", rcfg.storage_options),
        lambda: check_optical(tcfg.optical, tcfg.zoom),
    )
    urls = _scene_urls(inputs, scfg.storage_options)
    t0 = time.perf_counter()
    result = _on_cluster(
        cluster,
        workers,
        lambda client, progress: build_dataset(
            urls, work, out, scfg, tcfg, ccfg, rcfg, client, progress, say=typer.echo
        ),
    )
    rel = result.release
    m = rel.manifest
    for item in rel.errors:
        typer.echo(f"FAILED {item['key']}: {item['reason']}", err=True)
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
        typer.echo(f"{len(failures)} scenes / tiles left out ({work}/failures.jsonl):", err=True)
        for row in failures[:20]:
            typer.echo(f"  {row['stage']:10s} {row['id']}: {row['reason']}", err=True)
        if len(failures) > 20:
            typer.echo(f"  ... and {len(failures) - 20} more", err=True)
    if not m["samples"]:
        typer.echo("error: no samples could be built", err=True)
    return result.exit_code()


@app.command()
def build(
    inputs: Annotated[list[str], typer.Argument(help="SICD files, folders, globs, s3:// prefixes")],
    work: Annotated[str, typer.Option(help="work store URL (checkpoints of every stage)")],
    out: Annotated[str, typer.Option(help="release URL (WebDataset shards, manifest, stats)")],
    config: Path | None = typer.Option(
        None, help="YAML: `standardize:`, `tiles:`, `captions:`, `release:` sections"
    ),
    optical: str | None = typer.Option(
        None, help="XYZ URL template {z}/{x}/{y}, GeoTIFF or folder of XYZ tiles"
    ),
    zoom: int | None = typer.Option(None, help="XYZ zoom level (default 19)"),
    include_optical: bool | None = typer.Option(
        None, "--include-optical", help="ship <key>.optic.png (check the source's licence)"
    ),
    caption_model: str | None = typer.Option(
        None, help="caption model (local folder or hub id); none: captions null"
    ),
    cluster: ClusterOpt = "local",
    workers: int | None = typer.Option(None),
) -> None:
    """The whole build: standardize, tile, pair, caption, release; re-run to resume."""
    raise typer.Exit(
        _run_build(
            inputs,
            work,
            out,
            cluster,
            workers,
            config,
            optical,
            zoom,
            include_optical,
            caption_model,
        )
    )


@app.command()
def stats(
    dataset: Annotated[str, typer.Argument(help="a released dataset's URL ({out} of a build)")],
    out: Path = typer.Option(Path("."), help="folder for stats.json and labels.png"),
) -> None:
    """The caption table (words, P10/P90, vocabulary, duplicates) and labels per split."""
    from sarlo_dask.captions.stats import dataset_stats, format_labels, format_table, plot_labels
    from sarlo_dask.dataset import iter_meta

    result = dataset_stats(iter_meta(dataset))
    if not any(s["n"] for s in result["captions"].values()) and not result["labels"]["all"]:
        typer.echo(f"error: {dataset}: no committed shards with samples", err=True)
        raise typer.Exit(4)
    typer.echo(format_table(result))
    typer.echo("")
    typer.echo(format_labels(result))
    out.mkdir(parents=True, exist_ok=True)
    (out / "stats.json").write_text(json.dumps(result, indent=1, sort_keys=True))
    plot_labels(result, str(out / "labels.png"))
    typer.echo(f"wrote {out / 'stats.json'} and {out / 'labels.png'}")


@app.command()
def demo(
    out: Annotated[Path, typer.Argument(help="folder for the demo's inputs and outputs")],
    scenes: int = typer.Option(2, help="simulated scenes"),
    caption_model: str | None = typer.Option(None, help="caption model; none: captions null"),
    cluster: ClusterOpt = "local",
    workers: int | None = typer.Option(None),
) -> None:
    """Simulate scenes and their optical ground, then run the whole build on them."""
    from sarlo_dask.simulate import SimulationSpec, simulate_scene

    inputs = out / "inputs"
    from sarlo_dask.simulate import simulate_optical_tiles

    kinds = [(0.4, ((0.0,),)), (0.4, ((0.1, 2e-4),)), (1.2, ((0.0,),))]
    urls = []
    optical = out / "optical"  # the simulated ground seen from above, as XYZ tiles
    for i in range(scenes):
        spacing, skew = kinds[i % len(kinds)]
        n = int(round(1100 * 0.8 / spacing))
        path = inputs / f"sim_scene_{i:03d}.nitf"
        if not path.exists():
            simulate_scene(
                path,
                SimulationSpec(
                    rows=n,
                    cols=n,
                    row_spacing=spacing,
                    col_spacing=spacing,
                    col_deltakcoa=skew,
                    seed=i,
                    collect_start=f"2025-06-{1 + i:02d}T10:00:00",
                    lat=48.71 + 0.05 * i,
                ),
            )
        truth = json.loads(Path(str(path) + ".truth.json").read_text())
        simulate_optical_tiles(optical, truth, zoom=18)
        typer.echo(f"simulated {path} ({n} x {n} at {spacing} m) and its optical tiles")
        urls.append(str(path))
    code = _run_build(
        urls,
        str(out / "work"),
        str(out / "release"),
        cluster,
        workers,
        optical=str(optical),
        zoom=18,
        caption_model=caption_model,
    )
    if code == 0:
        typer.echo(f"release: {out / 'release'} (manifest.json, stats.json, train/ ...)")
        typer.echo(
            "read it with: sarlo_dask.dataset.open("
            f"'{out / 'release'}', split='train'); stats: sarlo stats {out / 'release'}"
        )
    raise typer.Exit(code)


if __name__ == "__main__":
    app()
