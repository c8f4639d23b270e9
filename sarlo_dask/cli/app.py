"""The `sarlo` command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from sarlo_dask.cli import run as cli_run
from sarlo_dask.cli import tools as cli_tools

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
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
cli_tools.register(app)
DEBUG = [False]
DemOpt = typer.Option(
    None,
    help="DEM the pixels are projected onto (GeoTIFF/COG, VRT or a folder of them; a path or "
    "any fsspec URL): terrain-aware geolocation, layover/shadow flags, terrain incidence",
)
CaptionServerOpt = typer.Option(
    None,
    help="an OpenAI-compatible server's base URL (e.g. http://node1:8000/v1), repeatable: "
    "captions from these servers (captions.backend openai), --caption-model naming the "
    "served model",
)


def _version(value: bool) -> None:
    if value:
        from sarlo_dask._version import __version__

        typer.echo(f"sarlo-dask {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="print the version and exit"
    ),
    debug: bool = typer.Option(False, "--debug", help="show the traceback of an error"),
) -> None:
    """Build SAR-optical-text datasets from SICD scenes on a Dask cluster."""
    DEBUG[0] = debug


def _plain_help(command: Any) -> Any:
    """`command` with help that shows no type tags (typer writes `<str>`, `<bool>`): options
    name their value after themselves (--work WORK), flags and arguments nothing."""
    for p in command.params:
        if p.param_type_name == "option":
            p.metavar = "" if p.is_flag else str(p.name).upper()
        else:
            setattr(p, "display_type_rich", lambda ctx: None)  # noqa: B010 - an instance's
    made = command.get_help_option  # --help is made per call: it gets no tag either

    def help_option(ctx: Any) -> Any:
        option = made(ctx)
        if option is not None:
            option.metavar = ""
        return option

    setattr(command, "get_help_option", help_option)  # noqa: B010
    for sub in getattr(command, "commands", {}).values():
        _plain_help(sub)
    return command


def main() -> None:
    """The `sarlo` command: an unexpected error is one line (its traceback with --debug)."""
    import sys

    from sarlo_dask.driver.cluster import redact_logs
    from sarlo_dask.errors import exception_line

    redact_logs()  # the scheduler and the client log here: no credentials in any line
    try:
        _plain_help(typer.main.get_command(app))(prog_name="sarlo", standalone_mode=True)
    except Exception as exc:
        if DEBUG[0]:
            raise
        typer.echo(f"error: {exception_line(exc)} (--debug shows the traceback)", err=True)
        sys.exit(1)


@app.command()
def standardize(
    inputs: Annotated[list[str], typer.Argument(help="SICD files, folders, globs, s3:// prefixes")],
    work: Annotated[str, typer.Option(help="work store URL (local folder, s3://...)")],
    spacing: float | None = typer.Option(None, help="target spacing, m (default 0.8)"),
    config: Path | None = typer.Option(None, help="YAML configuration"),
    min_size: int | None = typer.Option(None, help="smallest output size, px (default 1024)"),
    dem: str | None = DemOpt,
    cluster: ClusterOpt = "local",
    workers: int | None = typer.Option(None, help="local workers (default: CPU count, max 8)"),
) -> None:
    """Resample SICD scenes to SPACING in slant range, with geolocation, into WORK/scenes/."""
    code = cli_run.run_standardize(
        inputs, work, cluster, workers, spacing=spacing, config=config, min_size=min_size, dem=dem
    )
    raise typer.Exit(code)


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
    caption_server: list[str] | None = CaptionServerOpt,
    config: Path | None = typer.Option(
        None, help="YAML configuration (`tiles:` and `captions:` sections)"
    ),
    cluster: ClusterOpt = "local",
    workers: int | None = typer.Option(None),
) -> None:
    """Cut standardized scenes into tiles with previews, geometry and optical views."""
    raise typer.Exit(
        cli_run.run_tiles(
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
            caption_server=caption_server,
            config=config,
        )
    )


@app.command()
def build(
    inputs: Annotated[list[str], typer.Argument(help="SICD files, folders, globs, s3:// prefixes")],
    work: Annotated[
        str | None,
        typer.Option(help="work store URL (checkpoints of every stage; not for --dry-run)"),
    ] = None,
    out: Annotated[
        str | None,
        typer.Option(help="release URL (WebDataset shards, manifest, stats; not for --dry-run)"),
    ] = None,
    config: Path | None = typer.Option(
        None, help="YAML: `standardize:`, `tiles:`, `captions:`, `release:` sections"
    ),
    optical: str | None = typer.Option(
        None, help="XYZ URL template {z}/{x}/{y}, GeoTIFF or folder of XYZ tiles"
    ),
    zoom: int | None = typer.Option(None, help="XYZ zoom level (default 19)"),
    dem: str | None = DemOpt,
    include_optical: bool | None = typer.Option(
        None, "--include-optical", help="ship <key>.optic.png (check the source's licence)"
    ),
    optical_licence: str | None = typer.Option(
        None,
        "--optical-licence",
        help="the optical source's licence (SPDX id or URL): shipping optical pixels "
        "(--include-optical) is refused without one (release.optical_licence)",
    ),
    strict_splits: bool | None = typer.Option(
        None,
        "--strict-splits",
        help="keep out of validation and test every sample whose footprint overlaps a "
        "training sample of another pass (stats.json lists them either way)",
    ),
    caption_model: str | None = typer.Option(
        None, help="caption model (local folder or hub id); none: captions null"
    ),
    caption_server: list[str] | None = CaptionServerOpt,
    cluster: ClusterOpt = "local",
    workers: int | None = typer.Option(None),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="the selection, refusals and tiles per scene, from headers alone"
    ),
    replace: bool = typer.Option(
        False,
        "--replace",
        help="publish the release of these inputs in place of the release of other inputs "
        "that --out holds (without it, that is refused)",
    ),
) -> None:
    """The whole build: standardize, tile, pair, caption, release; re-run to resume."""
    if not dry_run and (work is None or out is None):
        missing = " and ".join(n for n, v in (("--work", work), ("--out", out)) if v is None)
        typer.echo(
            f"error: sarlo build: missing {missing} (where its checkpoints and its release go; "
            "only --dry-run, which writes nothing, runs without them)",
            err=True,
        )
        raise typer.Exit(2)
    settings = (config, optical, zoom, caption_model, caption_server, dry_run)
    release = {
        "include_optical": include_optical,
        "optical_licence": optical_licence,
        "strict_splits": strict_splits,
    }
    code = cli_run.run_build(
        inputs, work, out, cluster, workers, *settings, dem, replace, release=release
    )
    raise typer.Exit(code)


@app.command()
def demo(
    out: Annotated[Path, typer.Argument(help="folder for the demo's inputs and outputs")],
    scenes: int = typer.Option(3, help="simulated scenes (satellite passes)"),
    caption_model: str | None = typer.Option(None, help="caption model; none: captions null"),
    cluster: ClusterOpt = "local",
    workers: int | None = typer.Option(None),
) -> None:
    """Simulate scenes and their optical ground, run the whole build on them, then draw a few
    samples (OUT/samples.png) and the label shares (OUT/labels.png)."""
    from sarlo_dask.cli.demo import SETTINGS, ZOOM, demo_scenes

    inputs, optical = out / "inputs", out / "optical"  # optical: the ground from above
    out.mkdir(parents=True, exist_ok=True)
    settings = out / "demo.yaml"  # `sarlo build --config` reads the same file
    settings.write_text(SETTINGS)
    made = demo_scenes(scenes, inputs, optical)
    for scene in made:
        typer.echo(scene.line())
    urls, replaced = [str(scene.path) for scene in made], any(s.replaced for s in made)
    if replaced:  # a build resumes by settings, not by input bytes: start it afresh
        import shutil

        typer.echo(f"inputs of another demo version replaced: removing {out}/work and release")
        shutil.rmtree(out / "work", ignore_errors=True)
        shutil.rmtree(out / "release", ignore_errors=True)
    code = cli_run.run_build(
        urls,
        str(out / "work"),
        str(out / "release"),
        cluster,
        workers,
        config=settings,
        optical=str(optical),
        zoom=ZOOM,
        caption_model=caption_model,
        replace=True,  # the demo's folder holds the demo's release, whatever its scenes
    )
    if code == 0:
        from sarlo_dask.cli.figures import write_figures

        typer.echo(
            f"release: {out / 'release'} (manifest.json names the generation folder gen-*/ "
            "with the shards, index.parquet and stats.json; check it: sarlo verify "
            f"{out / 'release'})"
        )
        fig = write_figures(str(out / "release"), str(out), catalogue=str(inputs))
        typer.echo(f"figures: {fig.samples} ({fig.summary}) and {fig.labels}")
        typer.echo(
            "read it with: sarlo_dask.dataset.open("
            f"'{out / 'release'}', split='train'); stats: sarlo stats {out / 'release'}"
        )
        if not caption_model:
            typer.echo(
                "captions: none (no caption model). Add them with a model folder or an "
                f"OpenAI-compatible server: sarlo demo {out} --caption-model FOLDER, or "
                f"sarlo build {out}/inputs --work {out}/work --out {out}/release "
                f"--config {settings} --optical {optical} --zoom 18 --caption-server URL "
                "--caption-model NAME"
            )
    raise typer.Exit(code)


@app.command()
def serve(
    model: Annotated[str, typer.Argument(help="caption model folder (or hub id, if cached)")],
    host: str = typer.Option("127.0.0.1", help="address to listen on (0.0.0.0: every one)"),
    port: int = typer.Option(8000, min=1, max=65535, help="port"),
    name: str | None = typer.Option(None, help="the served model's name (default: MODEL)"),
    max_batch: int = typer.Option(8, min=1, help="most requests with one prompt per batch"),
    wait_ms: float = typer.Option(5.0, min=0, help="how long a batch waits to fill, ms"),
    max_tokens: int = typer.Option(1024, min=1, help="most tokens a request may ask for"),
    device: str = typer.Option("auto", help="auto (a GPU if there is one), cpu or cuda"),
    dtype: str = typer.Option("auto", help="auto, float32, float16, bfloat16"),
    threads: int | None = typer.Option(None, min=1, help="torch CPU threads (default: all)"),
) -> None:
    """Serve a caption model over the OpenAI chat-completions API (/v1), batching the
    requests that arrive together: the server of `--caption-server` (captions.backend
    openai) on a node without vLLM."""
    cli_run.run_serve(
        model, name, host, port, max_batch, wait_ms, max_tokens, device, dtype, threads
    )


if __name__ == "__main__":
    main()
