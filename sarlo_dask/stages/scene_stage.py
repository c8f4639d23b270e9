"""The scene stage's unit of work: plan one scene's standardization and create its store.

Reading the header, the grid algebra, the tie-point step search and the store's metadata
take a fraction of a second per scene: as tasks they run on the workers in parallel, where
the client would plan a catalogue's scenes one after another.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass, field
from typing import Any

import dask

from sarlo_dask.config import StandardizeConfig
from sarlo_dask.driver.integrity import Damage, store_digests, verify_store
from sarlo_dask.errors import SceneError, redact, refusals_travel
from sarlo_dask.geometry.dem import DemError
from sarlo_dask.geometry.heights import configured
from sarlo_dask.geometry.sicd import open_sicd, read_header, sicd_from_xml
from sarlo_dask.geometry.tiles import tile_windows
from sarlo_dask.io.readers import scene_id_from_url
from sarlo_dask.stages.standardize import plan_scene, standardize_scene, task_peaks
from sarlo_dask.storage_config import options_of
from sarlo_dask.store import Store, file_version


def check_fits(scene: Any, cfg: StandardizeConfig, url: str, memory: int) -> None:
    """Refuse, before any read, a scene whose resampling tasks a worker cannot hold: what a
    task holds at its peak (standardize.task_peaks: its block, the FFT working set and the
    resampled output at the target spacing, for a scene upsampled to 0.8 m larger than its
    input) must fit in half the memory a worker has per thread (`memory`); the other half
    is the worker's own and the results it keeps. The scene as a whole streams through."""
    if not memory:
        return
    peaks = task_peaks(sicd_from_xml(scene.attrs["sicd_xml"]), cfg)
    name, (need, lines, n_in, n_out) = max(peaks.items(), key=lambda kv: kv[1][0])
    if need > memory / 2:
        axis = "azimuth" if name == "chunk_range" else "range"
        raise SceneError(
            url,
            f"a resampling task of this scene needs about {_size(need)} (the {axis} pass: "
            f"{lines} lines of {n_in} -> {n_out} samples, its FFT working set and output), "
            f"more than the {_size(memory // 2)} a task may use: it does not fit workers "
            f"with {_size(memory)} of memory per thread: lower standardize.{name} or use "
            "workers with more memory",
        )


def _size(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


@dataclass
class ScenePlan:
    """What the scene stage has to do for one scene."""

    write: Any | None
    """the store's write then its digests (store_digests), delayed; None: the scene is
    complete under these settings"""
    rebuilt: str = ""
    """why a scene an earlier run completed is made again ("": it is not)"""
    digest: str = ""
    """of the settings and the inputs' versions the scene is made under (its marker's)"""
    inputs: dict[str, str] = field(default_factory=dict)
    """each input file (the SICD, the DEM's rasters) and its size and version"""
    damaged: list[Damage] = field(default_factory=list)
    """what was found damaged of the store an earlier run completed (it is made again)"""


def scene_inputs(url: str, cfg: StandardizeConfig) -> dict[str, str]:
    """The files a scene is made from and their versions (size and ETag or modification
    time): a scene whose input changed under the same URL is made again, not reused."""
    try:
        inputs = {redact(url): file_version(url, options_of(cfg, url))}
    except Exception:  # unreadable: the read that follows says why, in its words
        inputs = {redact(url): "unknown"}
    if (heights := configured(cfg)) is not None:
        try:
            inputs |= heights.versions()
        except DemError as exc:
            raise SceneError(url, str(exc)) from None
    return inputs


def scene_digest(cfg: StandardizeConfig, inputs: dict[str, str]) -> str:
    """The digest a scene's marker, store and tiles record: its settings and its inputs."""
    text = json.dumps({"settings": cfg.digest(), "inputs": inputs}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@refusals_travel
def plan_scene_store(
    url: str, scene_id: str, work: Store, cfg: StandardizeConfig, memory: int
) -> ScenePlan:
    """Plan the scene's standardization and create its store (a task), unless its marker says
    it is complete under these settings and its metadata (the attributes) verifies against
    the digests it records; its chunks are verified where tiles read them (resume).
    A scene that cannot be made raises SceneError. The input is read with the stage's
    storage options, the store written with {work}'s."""
    marker, store = work.scene_marker(scene_id), work.scene_store(scene_id)
    inputs = scene_inputs(url, cfg)
    digest, rebuilt, damaged = scene_digest(cfg, inputs), "", []
    if work.exists(marker):
        made = work.read_json(marker)
        changed = sorted(k for k in inputs if made.get("inputs", {}).get(k) != inputs[k])
        if made.get("config") == digest:
            damaged = verify_store(work, scene_id, made, chunks=False)
            if not damaged:
                if made.get("selection") != cfg.selection_digest():  # selected otherwise:
                    plan_scene(read_header(url, options_of(cfg, url))[0], cfg, url)  # again
                return ScenePlan(None, digest=digest, inputs=inputs)
            rebuilt = f"damaged: {damaged[0].path}"
        elif made.get("settings") == cfg.digest() and changed:
            rebuilt = f"input changed ({', '.join(changed)})"
        else:
            rebuilt = f"standardize settings changed ({made.get('config')} -> {digest})"
        work.remove(marker)  # not complete under these settings until rewritten
    scene = open_sicd(url, cfg.chunk_range, options_of(cfg, url))
    check_fits(scene, cfg, url, memory)
    try:  # the DEM is read, and the tie-point step searched on it, before any write
        heights = configured(cfg)
        dem = None if heights is None else heights.scene_grid(scene.attrs["sicd_xml"])
        out = standardize_scene(scene, cfg, dem)
    except DemError as exc:
        raise SceneError(url, str(exc)) from None
    out.attrs["scene_config"] = digest  # what its tiles record: settings and inputs
    work.remove(store)  # a partial store from an interrupted run
    with warnings.catch_warnings():
        # consolidated metadata is not in the v3 spec yet; zarr and xarray read it,
        # and it lets a plain xr.open_zarr(url) open the store in one request
        warnings.filterwarnings("ignore", message="Consolidated metadata")
        write = out.to_zarr(
            store,
            mode="w",
            compute=False,
            consolidated=True,
            zarr_format=3,
            storage_options=work.options or None,
        )
    # the digests its marker records, of the store as written (a task once the write is done)
    digests = dask.delayed(store_digests, pure=False)(work, scene_id, write)
    return ScenePlan(digests, rebuilt, digest, inputs, damaged)


@dataclass(frozen=True)
class ScenePreview:
    """What a build would make of one scene, from its header alone (`sarlo build --dry-run`)."""

    url: str
    scene_id: str
    reason: str = ""
    """why the selection refuses it ("": selected)"""
    size: tuple[int, int] = (0, 0)
    """(azimuth, range) pixels at the output spacing"""
    tiles: int = 0
    """windows the tile stage would cut (before its validity check)"""
    centre: tuple[float, float] | None = None
    """(lat, lon) of its scene centre point (SCP)"""

    def line(self) -> str:
        if self.reason:
            return f"refused  {redact(self.url)}: {self.reason}"
        az, rg = self.size
        return f"selected {self.scene_id}: {az} x {rg} px, {self.tiles} tiles"


def preview_scene(url: str, cfg: StandardizeConfig, size: int, stride: int) -> ScenePreview:
    """The scene's selection, output size and tile count from its header (a few small range
    requests); the memory rule needs the cluster's workers and is not checked here."""
    scene_id = scene_id_from_url(url)
    try:
        sicd, _ = read_header(url, options_of(cfg, url))
        plan_rg, plan_az = plan_scene(sicd, cfg, url)
    except SceneError as exc:
        return ScenePreview(url, scene_id, exc.reason)
    n = len(tile_windows(scene_id, plan_az.n_out, plan_rg.n_out, size, stride))
    scp = sicd.GeoData.SCP.LLH
    size_px = (plan_az.n_out, plan_rg.n_out)
    return ScenePreview(url, scene_id, size=size_px, tiles=n, centre=(scp.Lat, scp.Lon))
