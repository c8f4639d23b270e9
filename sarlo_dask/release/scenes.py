"""What the release reads of one scene in {work}: its kept tiles' meta.json and caption
records, each verified against its marker's digest first (a task per scene, on the workers)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sarlo_dask.captions.stats import caption_signals
from sarlo_dask.driver.integrity import Damage, sha256, unsealed, verify_meta, verify_store
from sarlo_dask.stages.caption_stage import caption_damage
from sarlo_dask.stages.tile_stage import tile_lineage
from sarlo_dask.store import Store


@dataclass
class SceneIndex:
    """What the release needs of one scene: its kept tiles and its store's provenance."""

    rows: list[dict[str, Any]]
    """per kept tile: key, pass id, MID label, captions and the settings it was made under"""
    provenance: Any
    damaged: list[Damage] = field(default_factory=list)
    """its units that do not verify (the release waits for them to be rebuilt)"""
    source_url: str = ""
    """its input, as its store records it (canonical; credentials removed)"""


def scene_index(work: Store, scene_id: str, captions: str | None = None) -> SceneIndex:
    """A scene's SceneIndex (a task: the scenes are indexed on the workers in parallel);
    `captions`: the caption settings' digest (None: no caption model, no captions). What it
    reads is verified first: the store's metadata, each meta.json against the tiles marker's
    digest (a kept tile whose meta.json is gone is damage, not a smaller scene), each caption
    record against its own."""
    from sarlo_dask.stages.standardize import open_scene_store

    url = work.scene_marker(scene_id)  # gone: the store is taken for damaged (rebuilt)
    damaged = verify_store(work, scene_id, work.read_json(url) if work.exists(url) else {}, False)
    marker = work.tiles_marker(scene_id)
    recorded = work.read_json(marker).get("tiles") if work.exists(marker) else None
    fs, root = work.filesystem(work.tile_dir(scene_id))
    fs.invalidate_cache()
    rows, seen = [], set()
    for path in sorted(fs.glob(f"{root}/*.meta.json")):
        data = fs.cat_file(path)
        key = path.rsplit("/", 1)[-1][: -len(".meta.json")]
        seen.add(key)
        if bad := verify_meta(scene_id, key, sha256(data), recorded):
            damaged += bad
            continue
        meta = json.loads(data)
        if meta.get("optical", {}).get("retry"):
            continue  # an optical retry is still due: not a finished sample
        rec, bad = caption_record(work, scene_id, meta, captions)
        damaged += bad
        if rec.get("transient"):
            continue  # a caption server failed it: a re-run captions and releases it
        rows.append(
            {
                "key": meta["key"],
                "scene_id": scene_id,
                "pass_id": meta["pass_id"],
                "acquisition": meta["acquisition"],
                "footprint": meta["footprint"],
                "quality": meta.get("quality"),  # tiles of schema < 2.3 have none
                "landcover": meta.get("landcover"),  # tiles.landcover: the class shares
                "sar_sha256": meta.get("digests", {}).get(f"{meta['key']}.sar.npy"),
                "label": rec.get("label") or "none",
                "caption": rec.get("caption"),
                "caption_signals": caption_signals(rec.get("caption"), rec.get("caption_raw")),
                "optical_source": meta.get("optical", {}).get("source"),
                "lineage": {**tile_lineage(meta), "caption_config": rec.get("caption_config")},
            }
        )
    gone = {k: v for k, v in (recorded or {}).items() if k not in seen}
    damaged += [d for k in sorted(gone) for d in verify_meta(scene_id, k, None, gone)]
    if any(d.kind == "scene" for d in damaged):
        return SceneIndex(rows, None, damaged)  # its attributes are not to be read
    attrs = open_scene_store(work.scene_store(scene_id), work.options, chunks=None).attrs
    return SceneIndex(rows, attrs.get("provenance"), damaged, attrs.get("source_url", ""))


def caption_record(
    work: Store, scene_id: str, meta: dict[str, Any], captions: str | None
) -> tuple[dict[str, Any], list[Damage]]:
    """The tile's caption record, if it describes this tile and was made with the caption
    settings of digest `captions` (None: none is); and its damage, if it does not verify."""
    url = work.caption(scene_id, meta["key"])
    if captions is None or not work.exists(url):
        return {}, []
    fs, path = work.filesystem(url)
    rec, why = unsealed(fs.cat_file(path))
    if rec is None:
        return {}, [caption_damage(scene_id, meta["key"], why)]
    same = rec.get("tile") == tile_lineage(meta) and rec.get("caption_config") == captions
    return (rec if same else {}), []
