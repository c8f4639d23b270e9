"""Checks made before any cluster starts: what can be known wrong from the command line, the
configuration and a few small requests is refused at once, in one line naming the culprit
(a `UsageError`, exit 2), not after workers have started."""

from __future__ import annotations

import os
import uuid
from typing import TYPE_CHECKING, Any

from sarlo_dask.errors import access_denied, exception_chain, redact, root_cause
from sarlo_dask.store import (
    Options,
    Store,
    filesystem,
    input_options,
    is_http,
    is_local,
    join,
)

if TYPE_CHECKING:
    from sarlo_dask.build_config import BuildConfig

PROBE_TIMEOUT_S = 5.0
PROBE_THREADS = 32
"""inputs and optical tiles probed at once (each a small request)"""
PROCESSOR_FILES = (
    "preprocessor_config.json",
    "processor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
)
"""what a model folder holds besides config.json when its processor can be loaded"""


class UsageError(Exception):
    """A usage or configuration error: `what` (an option, a URL) and why; exit 2. Several
    problems found at once are one line each."""

    def __init__(self, what: str, why: str | None = None) -> None:
        super().__init__(what if why is None else f"{what}: {why}")


def check_workers(workers: int | None) -> None:
    if workers is not None and workers < 1:
        raise UsageError(f"--workers {workers}", "a cluster needs at least 1 worker")


def check_plugins() -> None:
    """Every kind installed packages declare for a seam loads and is of it (a broken package
    is one line here, not a failure of every scene on the cluster)."""
    from sarlo_dask.geometry import heights
    from sarlo_dask.io import readers, writers
    from sarlo_dask.optical import sources

    for registry in (readers.KINDS, sources.KINDS, heights.KINDS, writers.KINDS):
        try:
            registry.installed()
        except ValueError as exc:
            raise UsageError(str(exc)) from None


def check_cluster(cluster: str) -> None:
    """A cluster spec that names a file (slurm:YAML, kubernetes:YAML, scheduler-file:PATH)
    names one that exists; an unknown kind is refused."""
    kind, _, path = cluster.partition(":")
    if cluster.startswith(("tcp://", "tls://", "ucx://")) or cluster in ("local", "local-cuda"):
        return
    if kind not in ("slurm", "kubernetes", "scheduler-file"):
        raise UsageError(
            f"--cluster {cluster}",
            "unknown cluster (local, local-cuda, slurm[:JOBQUEUE_YAML], "
            "kubernetes[:DASKCLUSTER_YAML], tcp://HOST:PORT or scheduler-file:PATH)",
        )
    if path and not os.path.exists(path):
        raise UsageError(f"--cluster {cluster}", f"no such file {path}")


def check_protocol(url: str, option: str) -> None:
    """`url`'s protocol is one fsspec knows and can import."""
    import fsspec

    protocol = url.split("://", 1)[0] if "://" in url else "file"
    try:
        fsspec.get_filesystem_class(protocol)
    except (ValueError, ImportError) as exc:
        raise UsageError(
            f"{option} {redact(url)}", f"unknown protocol {protocol!r} ({exc})"
        ) from None


def check_writable(url: str, option: str, storage_options: dict[str, Any] | None) -> None:
    """The store at `url` takes a write: a small probe object is written and removed (on a
    local disk, the nearest existing folder must be writable)."""
    check_protocol(url, option)
    try:
        fs, path = filesystem(url, storage_options)
    except Exception as exc:  # bad storage options, missing packages
        raise UsageError(f"{option} {redact(url)}", exception_chain(exc)) from None
    if is_local(fs):
        parent = path
        while parent and not os.path.exists(parent):
            parent = os.path.dirname(parent.rstrip("/")) or "/"
        if not os.access(parent, os.W_OK):
            raise UsageError(f"{option} {url}", f"{parent} is not writable")
        return
    probe = join(url, f".sarlo-probe-{uuid.uuid4().hex}")
    try:
        fs2, ppath = filesystem(probe, storage_options)
        fs2.pipe_file(ppath, b"")
        fs2.rm(ppath)
    except Exception as exc:
        raise UsageError(
            f"{option} {redact(url)}",
            f"cannot write there ({exception_chain(exc)}); check the credentials "
            "(AWS_* variables, a profile, or storage_options in the configuration)",
        ) from None


def check_release_inputs(
    out: str, urls: list[str], storage_options: dict[str, Any] | None, replace: bool
) -> None:
    """An --out holding the release of other inputs is not overwritten unless --replace:
    the one line names the scenes that differ (changed settings are no difference)."""
    from sarlo_dask.dataset import read_manifest
    from sarlo_dask.io.generations import input_change
    from sarlo_dask.io.readers import scene_id_from_url

    if replace:
        return
    change = input_change(read_manifest(out, storage_options), map(scene_id_from_url, urls))
    if change:
        raise UsageError(
            f"--out {redact(out)}", f"{change}; --replace publishes these in its place"
        )


def check_optical(spec: str | None, zoom: int) -> None:
    """The optical source parses and answers: a folder holds tiles, a GeoTIFF opens, an XYZ
    server answers a request (any HTTP status: only an unreachable host is refused)."""
    if not spec:
        return
    from sarlo_dask.optical.sources import source_from_spec

    try:
        source = source_from_spec(spec, zoom, timeout=PROBE_TIMEOUT_S)
    except (ValueError, OSError) as exc:  # its message names the source
        raise UsageError(str(exc)) from None
    why = source.check()  # each kind's own probe (optical.source)
    if why:
        raise UsageError(f"optical source {redact(spec)}", why)


def check_dem(cfg: Any) -> None:
    """standardize.dem, when set, serves heights (a raster: it opens as a geographic raster
    whose heights become HAE; another kind: its own probe)."""
    from sarlo_dask.geometry.dem import DemError
    from sarlo_dask.geometry.heights import configured

    try:
        heights = configured(cfg)
        if heights is not None:
            heights.check()
    except (DemError, ValueError) as exc:
        raise UsageError(str(exc)) from None  # it names the DEM


def check_landcover(tiles: Any) -> None:
    """tiles.landcover, when set, opens as one band of uint8 class codes with a CRS."""
    from sarlo_dask.geometry.landcover import LandCoverError, probe_landcover
    from sarlo_dask.storage_config import options_of

    if tiles.landcover:
        try:
            probe_landcover(tiles.landcover, options_of(tiles, tiles.landcover))
        except LandCoverError as exc:
            raise UsageError(str(exc)) from None


def check_caption_image(tiles: Any, captions: Any) -> None:
    """Captions of the optical view need the view: not with tiles.optical_mode metadata."""
    if captions.model and captions.image == "optical" and tiles.optical_mode == "metadata":
        raise UsageError(
            "captions.image optical",
            "tiles.optical_mode metadata makes no optical view to caption "
            "(set captions.image: sar, or optical_mode: fetch)",
        )


def check_caption_servers(cfg: Any) -> None:
    """With captions.backend openai: the API key's variable is set, and each server answers
    GET /models with the served model among its models."""
    import requests

    from sarlo_dask.captions.openai_server import api_key

    if cfg.backend != "openai" or not cfg.model:
        return
    try:
        key = api_key(cfg)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    for server in cfg.servers:
        where = f"caption server {redact(server)}"
        try:
            r = requests.get(
                f"{server.rstrip('/')}/models", headers=headers, timeout=PROBE_TIMEOUT_S
            )
        except requests.RequestException as exc:
            raise UsageError(where, f"does not answer ({type(exc).__name__})") from None
        if r.status_code in (401, 403):
            raise UsageError(where, f"refused the API key (HTTP {r.status_code})")
        if r.status_code != 200:
            raise UsageError(where, f"GET /models answered HTTP {r.status_code}")
        try:
            served = [m["id"] for m in r.json()["data"]]
        except (ValueError, KeyError, TypeError):
            raise UsageError(where, "GET /models answered no OpenAI model list") from None
        if cfg.model not in served:
            raise UsageError(
                f"captions.model {cfg.model}",
                f"not served by {redact(server)} (it serves {served})",
            )


def _each_problem(problems: list[str]) -> None:
    """Raise the problems found (one line each), if any."""
    if problems:
        raise UsageError("\n".join(problems))


def build_stores(build: BuildConfig, work: str, out: str) -> tuple[Store, Store]:
    """{work} and {out} as a build opens them, once (BuildConfig.work_store, out_store); a
    UsageError when the standardize and tiles sections give {work} one option two values."""
    try:
        return build.work_store(work), build.out_store(out)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def check_inputs(urls: list[str], storage_options: Options) -> None:
    """Every input scene exists and can be read: one metadata request each (local, s3://,
    http(s)://: a probe, nothing downloaded), in threads."""
    from concurrent.futures import ThreadPoolExecutor

    def probe(url: str) -> str | None:
        what = f"input {redact(url)}"
        if is_http(url):
            return _probe_http(url, what)
        try:
            fs, path = filesystem(url, input_options(url, storage_options))
            fs.info(path)
        except FileNotFoundError:
            return f"{what}: no such file"
        except Exception as exc:
            return f"{what}: {access_denied(exc) or f'cannot be read ({exception_chain(exc)})'}"
        if is_local(fs) and not os.access(path, os.R_OK):
            return f"{what}: not readable (permission denied)"
        return None

    with ThreadPoolExecutor(max(1, min(PROBE_THREADS, len(urls)))) as pool:
        _each_problem([p for p in pool.map(probe, urls) if p])


def _probe_http(url: str, what: str) -> str | None:
    """Why an http(s) input cannot be read (None: it can): a HEAD request, or a one-byte GET
    where HEAD is not allowed; credentials in the URL are sent as basic auth."""
    import requests

    try:
        r = requests.head(url, timeout=PROBE_TIMEOUT_S, allow_redirects=True)
        if r.status_code in (405, 501):
            r = requests.get(url, headers={"Range": "bytes=0-0"}, timeout=PROBE_TIMEOUT_S)
    except requests.RequestException as exc:
        return f"{what}: unreachable ({root_cause(exc)})"
    if r.status_code in (401, 403):
        why = "Unauthorized" if r.status_code == 401 else "Forbidden"
        return f"{what}: access denied (HTTP {r.status_code} {why}): check the credentials"
    if r.status_code == 404:
        return f"{what}: no such file"
    if r.status_code >= 400:
        return f"{what}: cannot be read (HTTP {r.status_code})"
    return None


def check_caption_model(cfg: Any) -> None:
    """The in-process caption model (and rewrite model) resolve offline: a local folder with
    its config and processor files, or a hub id in the local Hugging Face cache."""
    if cfg.backend != "transformers" or not cfg.model:
        return
    for option, model in (
        ("captions.model", cfg.model),
        ("captions.rewrite_model", cfg.rewrite_model),
    ):
        if model:
            _resolve_model(option, model)


def _resolve_model(option: str, model: str) -> None:
    from pathlib import Path

    what = f"{option} {model}"
    folder = Path(model).expanduser()
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            raise UsageError(what, "the folder has no config.json (not a transformers model)")
        if not any((folder / n).is_file() for n in PROCESSOR_FILES):
            raise UsageError(what, f"the folder has no processor or tokenizer ({PROCESSOR_FILES})")
        return
    if model.startswith(("/", ".", "~")) or model.count("/") > 1 or folder.exists():
        raise UsageError(what, "no such model folder")
    from huggingface_hub import try_to_load_from_cache

    def cached(name: str) -> bool:
        return isinstance(try_to_load_from_cache(model, name), str)

    if not cached("config.json") or not any(cached(n) for n in PROCESSOR_FILES):
        raise UsageError(
            what,
            "neither a model folder here nor a model in the local Hugging Face cache "
            f"(the build loads it offline): download it first (hf download {model}) or give "
            "its folder",
        )


def check_optical_coverage(spec: str | None, tiles: Any, urls: list[str], scene: Any) -> None:
    """An XYZ source (a folder or a server) has tiles at the zoom asked (`tiles`: the tile
    settings): a folder has that zoom level (else the levels it has are named), and each
    scene the selection keeps (`scene`: the standardize settings) and that gives tiles has
    its centre tile there (its SCP, from the scene's header)."""
    if not spec:
        return
    from concurrent.futures import ThreadPoolExecutor

    import mercantile

    from sarlo_dask.optical.source import TileFailure, XYZSource
    from sarlo_dask.optical.sources import source_from_spec
    from sarlo_dask.stages.scene_stage import preview_scene

    zoom = tiles.zoom
    source = source_from_spec(spec, zoom)
    if not isinstance(source, XYZSource):  # a raster has no zoom: its window is read
        return
    what = f"optical source {redact(spec)}"
    levels = source.zoom_levels()
    if levels is not None and zoom not in levels:
        raise UsageError(what, f"no tiles at zoom {zoom} (it has zoom {levels})")

    def centre(url: str) -> tuple[int, int, int] | None:
        """The centre tile of a scene the selection keeps and that gives tiles (a refused
        scene says its own reason later), as `sarlo build --dry-run` previews it."""
        view = preview_scene(url, scene, tiles.size, tiles.stride)
        if view.reason or not view.tiles or view.centre is None:
            return None
        t = mercantile.tile(view.centre[1], view.centre[0], zoom)
        return (zoom, t.x, t.y)

    with ThreadPoolExecutor(max(1, min(PROBE_THREADS, len(urls)))) as pool:
        tiles_of = dict(zip(urls, pool.map(centre, urls), strict=True))
    wanted = sorted({t for t in tiles_of.values() if t is not None})
    got = source.fetch(wanted)
    problems = []
    for url, t in tiles_of.items():
        if t is None:
            continue
        z, x, y = t
        tile = got[t]
        if tile is None or isinstance(tile, TileFailure):
            why = tile.reason if isinstance(tile, TileFailure) else "not there"
            problems.append(
                f"{what}: no tile at zoom {z} over {redact(url)} (its centre tile {z}/{x}/{y}: "
                f"{why})"
            )
    _each_problem(problems)
