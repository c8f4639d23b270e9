"""The caption stage's unit of work: a batch of one scene's tiles -> caption records.

Record of tile KEY: {work}/captions/{scene_id}/KEY.json with `caption` {SHORT, MID, LONG}
(cleaned; null when there is none, `reason` saying why and `transient` whether a re-run asks
again), `caption_raw` (the model's text), `label` (scene category of the MID caption), the
model (a server's own model id), the config digest, the lineage of the tile it describes
(a record of a tile made under other settings is never reused) and its own sha256
(integrity.sealed: a record that does not verify is captioned again).
"""

from __future__ import annotations

import io
from typing import Any

from sarlo_dask.captions.clean import clean
from sarlo_dask.captions.label import label
from sarlo_dask.config import CaptionConfig
from sarlo_dask.driver.cluster import off_the_thread_pool
from sarlo_dask.driver.integrity import Damage, sealed, unsealed
from sarlo_dask.stages.tile_stage import tile_lineage
from sarlo_dask.store import Store

NO_MODEL = "no caption model configured"


def batches_run(dask_worker: Any = None) -> int:
    """Caption batches this worker (or process) ran (tests hold model loads against it); a
    worker's through `client.run(batches_run)`."""
    from sarlo_dask.captions.backend import caption_models

    return caption_models(dask_worker).batches


def stored_captions(
    work: Store, scene_id: str, cfg: CaptionConfig, lineage: dict[str, Any] | None
) -> tuple[dict[str, dict[str, Any]], list[Damage]]:
    """The caption records of the scene an earlier run wrote with this config, of tiles made
    under `lineage` (the scene's and tiles' settings now; None: unknown, nothing reused),
    and the records whose own digest does not verify (not reused: captioned again)."""
    fs, path = work.filesystem(work.captions_dir(scene_id))
    fs.invalidate_cache()
    if lineage is None or not fs.exists(path):
        return {}, []
    done, damaged = {}, []
    for name in fs.ls(path, detail=False):
        if name.endswith(".json"):
            key = name.rsplit("/", 1)[-1][: -len(".json")]
            rec, why = unsealed(fs.cat_file(name))
            if rec is None:
                damaged.append(caption_damage(scene_id, key, why))
                continue
            same = rec.get("caption_config") == cfg.digest() and rec.get("tile") == lineage
            if same and not rec.get("transient"):  # a server that failed is asked again
                done[key] = rec
    return done, damaged


def caption_damage(scene_id: str, key: str, reason: str) -> Damage:
    return Damage(f"captions/{scene_id}/{key}.json", reason, "caption", scene_id, key)


def caption_batch(
    work: Store, scene_id: str, keys: list[str], cfg: CaptionConfig, share: int = 1
) -> list[dict[str, Any]]:
    """Caption the tiles `keys` of one scene through cfg's backend (`share`: the processes
    that send to its servers at once); write a record per tile; return one summary per
    tile: key, captioned (bool), reason, transient (bool: a re-run may caption it)."""
    from PIL import Image

    from sarlo_dask.captions.backend import caption_models, get_rewriter
    from sarlo_dask.captions.interface import get_backend

    records: dict[str, dict[str, Any]] = {}
    lineage: dict[str, dict[str, Any]] = {}
    images: list[Image.Image] = []
    todo: list[str] = []
    for key in keys:
        meta = work.read_json(work.tile_member(scene_id, key, "meta.json"))
        lineage[key] = tile_lineage(meta)
        status = meta.get("optical", {}).get("status")
        if cfg.image == "optical" and status != "ok":
            records[key] = {"caption": None, "reason": f"no optical image ({status})"}
            continue
        name = (
            f"{key}.optic.png"
            if cfg.image == "optical"
            else f"{key}.sar.{meta['preview']['format']}"
        )
        fs, root = work.filesystem(work.tile_dir(scene_id))
        with fs.open(f"{root}/{name}", "rb") as f:
            images.append(Image.open(io.BytesIO(f.read())).convert("RGB"))
        todo.append(key)
    if todo:
        counts = caption_models()
        with counts.lock:
            counts.batches += 1
        backend = get_backend(cfg, share)
        with off_the_thread_pool(backend.remote):  # a server's answers: the worker goes on
            made = backend.generate(images, cfg.prompts)
        for i, key in enumerate(todo):
            missing = [g for g in (made[kind][i] for kind in cfg.prompts) if g.text is None]
            if missing:  # no caption without all three texts; the first reason says why
                records[key] = {
                    "caption": None,
                    "model": missing[0].model,
                    "reason": missing[0].reason,
                    "transient": any(g.transient for g in missing),
                }
        ok = [i for i, key in enumerate(todo) if key not in records]
        raw = {kind: [str(made[kind][i].text) for i in ok] for kind in cfg.prompts}
        texts = raw
        if cfg.rewrite_model and ok:
            rewriter = get_rewriter(cfg)
            texts = {
                kind: rewriter.rewrite(v, cfg.rewrite_instruction, cfg.rewrite_max_new_tokens)
                for kind, v in raw.items()
            }
        for j, i in enumerate(ok):
            key = todo[i]
            caption = {kind: clean(texts[kind][j]) for kind in cfg.prompts}
            records[key] = {
                "caption": caption,
                "caption_raw": {kind: raw[kind][j] for kind in cfg.prompts},
                "label": label(caption["MID"]),
                "model": made["MID"][i].model,
                "reason": None,
            }
            if not all(caption.values()):  # clean() dropped every sentence of one: no caption
                empty = sorted(k for k, v in caption.items() if not v)
                records[key] |= {
                    "caption": None,
                    "label": None,
                    "reason": f"every sentence of the {'/'.join(empty)} caption was "
                    "speculative or about colour (dropped by captions.clean)",
                }
    out = []
    for key in keys:
        rec = {
            "key": key,
            "scene_id": scene_id,
            "caption": None,
            "caption_raw": None,
            "label": None,
            "model": cfg.model,
            "image": cfg.image,
            "caption_config": cfg.digest(),
            "tile": lineage[key],
            **records[key],
        }
        work.write_json(work.caption(scene_id, key), sealed(rec))
        out.append(
            {
                "key": key,
                "captioned": rec["caption"] is not None,
                "reason": rec["reason"],
                "transient": rec.get("transient", False),
            }
        )
    return out
