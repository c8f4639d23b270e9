"""What an earlier run left in {work}, and whether it may be reused.

Every unit records the digests of the settings that shaped it (a scene its standardize
settings; a tile its scene's and its own; a caption record its tile's and the caption
settings; a shard the plan, the release settings and every sample's). A unit made under
other settings is removed with everything made from it and made again, never reused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sarlo_dask._version import __version__
from sarlo_dask.config import CaptionConfig, TileConfig
from sarlo_dask.driver.integrity import (
    Damage,
    missing_tiles,
    verify_meta,
    verify_store,
    verify_tile_file,
)
from sarlo_dask.driver.outcomes import SceneResult, SceneTiles
from sarlo_dask.errors import redact
from sarlo_dask.geometry.tiles import Window, tile_windows
from sarlo_dask.stages.caption_stage import stored_captions
from sarlo_dask.stages.tile_stage import stored_summary
from sarlo_dask.store import Store

STAGE_OF = {"scene_config": "standardize", "tile_config": "tiles", "caption_config": "captions"}


def stale_reason(made: dict[str, Any] | None, want: dict[str, Any]) -> str:
    """Which stages' settings differ between what a unit was made under and what is wanted."""
    changed = [STAGE_OF.get(k, k) for k in sorted(want) if (made or {}).get(k) != want[k]]
    return f"{' and '.join(changed) or 'no'} settings changed"


def remove_scene_tiles(work: Store, scene_id: str) -> None:
    """Remove a scene's tiles, their marker and their captions (all made from the scene)."""
    work.remove(work.tiles_marker(scene_id))
    work.remove(work.tile_dir(scene_id))
    work.remove(work.captions_dir(scene_id))


def completed_scenes(work: Store) -> list[str]:
    """Scene ids whose standardization finished (their marker exists), sorted."""
    fs, path = work.filesystem(work.path("scenes"))
    fs.invalidate_cache()
    if not fs.exists(path):
        return []
    names = [p.rsplit("/", 1)[-1] for p in fs.ls(path, detail=False)]
    return sorted(n[: -len(".done.json")] for n in names if n.endswith(".done.json"))


@dataclass
class TilePlan:
    """What the tile stage has to do for one scene, from what {work} holds."""

    scene_id: str
    lineage: dict[str, Any]
    """the settings its tiles are made under now: the scene's and the tiles' digests"""
    skipped: dict[str, Any] | None = None
    """the tiles marker's counts when the scene's tiles are complete under `lineage`"""
    windows: list[Window] = field(default_factory=list)
    stored: list[dict[str, Any] | None] = field(default_factory=list)
    """per window, the summary of the tile an earlier run made under `lineage`, else None"""
    captions: dict[str, dict[str, Any]] = field(default_factory=dict)
    """caption records an earlier run made of these tiles with the caption settings, by key"""
    rebuilt: str = ""
    """why the tiles an earlier run made were removed ("": none were)"""
    damaged: list[Damage] = field(default_factory=list)
    """tiles and caption records found damaged (made again), or the scene's store"""

    def store_damaged(self) -> bool:
        """Whether the store is damaged: no tile is cut from it before it is rebuilt."""
        return any(d.kind == "scene" for d in self.damaged)


def plan_scene_tiles(
    work: Store, scene_id: str, cfg: TileConfig, captions: CaptionConfig | None
) -> TilePlan:
    """A scene's TilePlan (a task: a scene's resume reads run on the workers in parallel).
    Tiles of another lineage are removed with their captions: all are made again. Tiles and
    caption records are reused only when their digests verify (else made again, and said
    in `damaged`); when a tile is to be cut, the store's chunks are verified first (damaged:
    no window is planned, the build rebuilds the store)."""
    from sarlo_dask.stages.standardize import open_scene_store

    scene = work.read_json(work.scene_marker(scene_id))
    plan = TilePlan(scene_id, {"scene_config": scene.get("config"), "tile_config": cfg.digest()})
    marker = work.tiles_marker(scene_id)
    made = work.read_json(marker) if work.exists(marker) else None
    current = made is not None and made.get("lineage") == plan.lineage
    recorded = made.get("tiles") if made is not None and current else None
    if made is not None and current and captions is None:
        plan.damaged = missing_tiles(work, scene_id, recorded)
        if recorded is not None and not plan.damaged:
            plan.skipped = {k: made[k] for k in ("kept", "refused", "optical_failed") if k in made}
            return plan
    ds = open_scene_store(work.scene_store(scene_id), work.options)
    plan.windows = tile_windows(
        scene_id, ds.sizes["azimuth"], ds.sizes["range"], cfg.size, cfg.stride
    )
    stored = [stored_summary(work, w) for w in plan.windows]
    plan.damaged = [
        d
        for w, s in zip(plan.windows, stored, strict=True)
        for d in verify_meta(scene_id, w.key, None if s is None else s["digest"], recorded)
    ]
    bad = {d.key for d in plan.damaged}
    plan.stored = [
        None if s is None or s["retry"] or w.key in bad else s
        for w, s in zip(plan.windows, stored, strict=True)
    ]
    old = [made.get("lineage")] if made is not None else []
    old += [d["lineage"] for d in plan.stored if d is not None]
    stale = [o for o in old if o != plan.lineage]
    if stale:  # made under other settings: removed, all made again
        plan.rebuilt = stale_reason(stale[0], plan.lineage)
        remove_scene_tiles(work, scene_id)
        plan.stored = [None] * len(plan.windows)
    if captions is not None:
        plan.captions, damaged = stored_captions(work, scene_id, captions, plan.lineage)
        plan.damaged += damaged + caption_images(work, plan, captions)
        bad = {d.key for d in plan.damaged if d.kind == "tile"}
        pairs = zip(plan.windows, plan.stored, strict=True)
        plan.stored = [None if w.key in bad else s for w, s in pairs]
    if any(s is None for s in plan.stored):  # tiles are cut from the store: verify it first
        plan.damaged += verify_store(work, scene_id, scene, chunks=True)
        if plan.store_damaged():  # not complete: the scene stage makes it again
            work.remove(work.scene_marker(scene_id))
    return plan


def caption_images(work: Store, plan: TilePlan, cfg: CaptionConfig) -> list[Damage]:
    """The images that stored tiles without a caption record give the caption model, checked
    against their meta.json's digests before the model sees them (a damaged one: the tile is
    made again, then captioned)."""
    out = []
    for w, s in zip(plan.windows, plan.stored, strict=True):
        if s is None or w.key in plan.captions:
            continue
        meta = work.read_json(work.tile_member(plan.scene_id, w.key, "meta.json"))
        if cfg.image == "optical" and meta.get("optical", {}).get("status") != "ok":
            continue  # no image: the record says why
        name = "optic.png" if cfg.image == "optical" else f"sar.{meta['preview']['format']}"
        out += verify_tile_file(work, plan.scene_id, w.key, name, meta)
    return out


def scene_marker(
    res: SceneResult,
    digest: str,
    settings: str,
    inputs: dict[str, str],
    digests: dict[str, str],
    selection: str,
) -> dict[str, Any]:
    """A completed scene's marker: its source, store, the settings (`settings`) and input
    versions (`inputs`) it was made under (`config`: the digest of both), the selection it
    passed (`selection`: checked again when it differs) and the sha256 of each object of
    its store (`digests`, by path inside it)."""
    return {
        "digests": digests,
        "scene_id": res.scene_id,
        "source_url": redact(res.url),
        "store": f"scenes/{res.scene_id}.zarr",  # relative to {work}
        "package_version": __version__,
        "config": digest,
        "settings": settings,
        "selection": selection,
        "inputs": inputs,
    }


def tiles_marker(res: SceneTiles, lineage: dict[str, Any]) -> dict[str, Any]:
    """A scene's tiles marker: what its windows gave, the settings they were made under and
    the sha256 of each kept tile's meta.json (which records its other members' digests)."""
    return {
        "scene_id": res.scene_id,
        "tiles": dict(sorted(res.tiles.items())),
        "kept": res.kept,
        "refused": res.refused,
        "optical_failed": res.optical_failed,
        "lineage": lineage,
    }
