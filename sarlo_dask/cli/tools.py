"""The `sarlo` commands around the build: simulate scenes, rebuild a sample's optical view,
a release's caption and label statistics, verify a release."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer


def simulate(
    out: Annotated[Path, typer.Argument(help="SICD NITF to write (truth goes to OUT.truth.json)")],
    rows: int = typer.Option(3200, help="range samples"),
    cols: int = typer.Option(3200, help="azimuth samples"),
    spacing: float = typer.Option(
        0.4, help="native spacing, m (both axes); the defaults make 2 x 2 tiles of 1024 px"
    ),
    oversampling: float = typer.Option(1.25),
    weighting: str = typer.Option("TAYLOR", help="UNIFORM, TAYLOR or HAMMING"),
    skew: float = typer.Option(0.0, help="constant azimuth DeltaKCOA, cycles/m"),
    skew_rate: float = typer.Option(0.0, help="azimuth DeltaKCOA change per metre of azimuth"),
    targets: int = typer.Option(9),
    seed: int = typer.Option(0),
    lat: float = typer.Option(48.7128),
    lon: float = typer.Option(2.2075),
    relief: float = typer.Option(
        0.0,
        help="terrain relief over the footprint, m (0: flat ground): targets on the terrain, "
        "its DEM (HAE, EPSG:4979) written to OUT.dem.tif",
    ),
    ground: str | None = typer.Option(
        None,
        help="landscape (fields, roads, a river, trees, buildings: the default on flat ground) "
        "or uniform (one sigma0: the default with --relief)",
    ),
    terrain_seed: int = typer.Option(0, help="seed of the terrain's shape"),
    dem_spacing: float = typer.Option(2.0, help="DEM spacing, m"),
    allow_layover: bool = typer.Option(
        False, help="accept slopes facing the sensor as steep as the incidence (else refused)"
    ),
    like: Path | None = typer.Option(
        None,
        help="a real SICD XML (or NITF) whose geometry, grid, skew, weighting, radiometry and "
        "image formation to keep: ROWS x COLS on its SCP, in its pixel type",
    ),
    variant: str | None = typer.Option(
        None,
        help="with --like: a documented transformation of its geometry first "
        "(sarlo_dask.sim.variants: backprojected)",
    ),
) -> None:
    """Write a synthetic SICD with point targets at known ground positions: a spotlight PFA
    of the given spacing, on flat ground or (--relief) on a terrain with its DEM, or (--like)
    the geometry of a real product."""
    from sarlo_dask.sim.scene import SimulationSpec, simulate_scene

    if like is not None:
        if relief:
            typer.echo("error: --relief is for simulated geometries, not --like", err=True)
            raise typer.Exit(2)
        _simulate_like(like, out, rows, cols, seed, targets, variant)
        return
    if variant is not None:
        typer.echo("error: --variant transforms a --like geometry", err=True)
        raise typer.Exit(2)

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
        relief_m=relief,
        terrain_seed=terrain_seed,
        dem_spacing_m=dem_spacing,
        allow_layover=allow_layover,
        ground={None: "" if relief else "landscape", "uniform": ""}.get(ground, ground or ""),
    )
    try:
        truth = simulate_scene(out, spec)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    where = ", a landscape" if spec.ground else ""
    if "terrain" in truth:
        stats = truth["terrain_stats"]
        where = (
            f", on {stats['relief_m']:.0f} m of relief (steepest slope facing the sensor "
            f"{stats['max_facing_slope_deg']:.1f} deg, {truth['layover_targets']} targets laid "
            f"over); DEM {truth['dem']['file']}"
        )
    typer.echo(
        f"wrote {out} ({rows} x {cols} at {spacing} m, {len(truth['targets'])} targets{where})"
    )


def _simulate_like(
    like: Path, out: Path, rows: int, cols: int, seed: int, targets: int, variant: str | None
) -> None:
    from sarlo_dask.errors import SceneError
    from sarlo_dask.geometry.sicd import read_sicd_meta
    from sarlo_dask.sim.like import simulate_like
    from sarlo_dask.sim.variants import apply_variant

    try:
        if like.suffix.lower() in (".nitf", ".ntf"):
            xml = read_sicd_meta(str(like)).to_xml_string(tag="SICD")
        else:
            xml = like.read_text(encoding="utf-8")
        if variant is not None:
            xml = apply_variant(xml, variant)
        truth = simulate_like(xml, out, rows, cols, seed=seed, n_targets=targets)
    except (OSError, ValueError, SceneError) as exc:
        typer.echo(f"error: --like {like}: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(
        f"wrote {out} ({rows} x {cols} like {like.name}"
        f"{f' ({variant})' if variant else ''}, {truth['pixel_type']}, "
        f"{len(truth['targets'])} targets)"
    )


optical_app = typer.Typer(no_args_is_help=True, help="Optical views of released samples.")


def optical_reconstruct(
    sample: Annotated[str, typer.Argument(help="a sample's meta.json (path or URL)")],
    source: str | None = typer.Option(
        None,
        "--source",
        "--optical",
        help="the optical source the build used: XYZ template, GeoTIFF, folder, or the "
        "folder:PATH / geotiff:PATH meta.json records (default: meta.json's, whose local "
        "paths are absolute: it resolves from any folder of the machine that built it)",
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
    from sarlo_dask.geometry.tiles import encode_image
    from sarlo_dask.optical.reconstruct import (
        RECONSTRUCT_HTTP,
        ReconstructError,
        load_sample,
        reconstruct_optical,
        resolve_source,
    )
    from sarlo_dask.store import filesystem

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


REPORTS = "reports"
"""`sarlo stats`' folder in a release by default (the build neither reads nor removes it)"""


def stats(
    dataset: Annotated[str, typer.Argument(help="a released dataset's URL ({out} of a build)")],
    out: str | None = typer.Option(
        None,
        help="folder or URL for stats.json and labels.png (default: DATASET/reports, beside "
        "the release's generation: no part of it for `sarlo verify`, kept by later builds)",
    ),
) -> None:
    """The caption table (words, P10/P90, vocabulary, duplicates) and labels per split."""
    from sarlo_dask.captions.stats import dataset_stats, format_labels, format_table
    from sarlo_dask.cli.figures import labels_png
    from sarlo_dask.dataset import iter_meta
    from sarlo_dask.store import join, write_bytes

    folder = (out or join(dataset.rstrip("/"), REPORTS)).rstrip("/")
    result = dataset_stats(iter_meta(dataset))
    if not any(s["n"] for s in result["captions"].values()) and not result["labels"]["all"]:
        typer.echo(f"error: {dataset}: no committed shards with samples", err=True)
        raise typer.Exit(4)
    typer.echo(format_table(result))
    typer.echo("")
    typer.echo(format_labels(result))
    write_bytes(f"{folder}/stats.json", json.dumps(result, indent=1, sort_keys=True).encode())
    write_bytes(f"{folder}/labels.png", labels_png(result))
    typer.echo(f"wrote {folder}/stats.json and {folder}/labels.png")


def verify(
    release: Annotated[str, typer.Argument(help="a release's URL (--out of a build)")],
    deep: bool = typer.Option(
        False, "--deep", help="also decode every sample (npy loads, json parses, png decodes)"
    ),
    config: Path | None = typer.Option(
        None, help="YAML whose storage section (and release.storage_options) reach the release"
    ),
) -> None:
    """Check a release against its manifest: every shard's size and sha256, index rows
    against the shards' members, the counts. One line per problem (MISSING, MISMATCH,
    EXTRA, INDEX, COUNT, UNDECODABLE and the file, relative to RELEASE) and exit 1; exit 0
    when it is whole. The same `sarlo build` again repairs damaged or missing shards."""
    from sarlo_dask.cli.run import configure
    from sarlo_dask.config import load_release_config
    from sarlo_dask.errors import redact
    from sarlo_dask.release.verify import verify_release
    from sarlo_dask.storage_config import options_of
    from sarlo_dask.store import Store

    options = options_of(configure(load_release_config, config, {}), release) if config else {}
    report = verify_release(Store.of(release, options), deep)
    for problem in report.problems:
        typer.echo(problem.line())
    if report.problems:
        typer.echo(f"{len(report.problems)} problems in {redact(release)}", err=True)
        raise typer.Exit(1)
    typer.echo(
        f"intact: {report.shards} shards, {report.samples} samples, {report.bytes / 1e6:.1f} MB "
        f"read{' and decoded' * deep} in {report.seconds:.1f} s"
    )


def register(app: typer.Typer) -> None:
    """Add these commands to the `sarlo` app."""
    app.command()(simulate)
    app.command()(verify)
    optical_app.command("reconstruct")(optical_reconstruct)
    app.add_typer(optical_app, name="optical")
    app.command()(stats)
