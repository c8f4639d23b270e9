"""The release: splits by satellite pass, a deterministic shard plan, WebDataset shards.

Layout of one release (a generation, sarlo_dask.io.generations, in {out}/gen-<plan digest>/):
{split}/chunk_NNN/shard-NNNNN.tar, each followed by its commit marker shard-NNNNN.done.json
(sha256, size, keys, member offsets, plan digest); then index.parquet and stats.json; then
{out}/manifest.json makes it current. A shard is written by one task (sarlo_dask.io.shard_tar:
webdataset's tar layout at a fixed mtime, hashed as written), to a temporary name first, so
a reader never sees half a shard; a committed shard is reused only when its bytes are still
those its marker lists (`commit_shard`).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sarlo_dask._version import __version__
from sarlo_dask.captions.stats import caption_signals
from sarlo_dask.config import ReleaseConfig
from sarlo_dask.dataset import read_manifest, shard_marker
from sarlo_dask.driver.integrity import (
    Damage,
    DamagedError,
    tile_damage,
    verify_member,
)
from sarlo_dask.driver.outcomes import Failure, Release
from sarlo_dask.geometry.acquisition import SCHEMA_VERSION, date_gap_days
from sarlo_dask.io import writers
from sarlo_dask.io.index import INDEX, index_parquet
from sarlo_dask.io.shard_tar import Buffer, ShardTar, mapped
from sarlo_dask.release.overlap import Ground, ground
from sarlo_dask.release.scenes import SceneIndex, caption_record
from sarlo_dask.release.splits import (
    SampleRef,
    ShardSpec,
    plan_digest,
    shard_plan,
    split_passes,
    split_report,
)
from sarlo_dask.release.verify import read_shard
from sarlo_dask.stages.caption_stage import NO_MODEL
from sarlo_dask.store import PARTIAL, Store, catalogue_root, is_local, portable_url, staging_file


def unreleased(out: Store, why: str, errors: Sequence[Failure] = ()) -> Release:
    """The Release of a build that left {out} as it was (its current release, if any): `why`
    says what kept the new one back, `errors` the shards that failed."""
    none = {"samples": 0, "shards": [], "splits": {}, "captions": {"captioned": 0, "without": 0}}
    manifest = read_manifest(out.url, out.options) or none
    return Release(manifest, 0, 0, [*errors, Failure("release", "shard", "release", why)])


def damaged_release(out: Store, damaged: list[Damage]) -> Release:
    """The Release of a pass that found {work} units damaged before writing any shard: {out}
    left as it was; the build rebuilds the units and releases again."""
    rel = unreleased(out, f"release left as it was: {len(damaged)} damaged units made again first")
    why = [
        Failure(d.path, "scene" if d.kind == "scene" else "tile", "release", f"damaged: {d.reason}")
        for d in damaged
    ]
    return Release(rel.manifest, 0, 0, why, damaged=damaged)


@dataclass
class ReleasePlan:
    """The release's plan over the scenes' kept tiles: splits by pass, shards, their digest."""

    samples: list[SampleRef]
    assignment: dict[str, str]
    """pass id -> split"""
    shards: list[ShardSpec]
    digest: str
    rows: list[dict[str, Any]]
    """index rows of the released samples (label, caption), in sample order"""
    index: Mapping[str, SceneIndex]
    sources: dict[str, str]
    """scene id -> its source_url in meta.json (`store.portable_url`)"""
    ground: Ground
    """grid cells, groups, leakage, withheld and duplicate samples (release.overlap)"""

    def extras(self, scene_id: str, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        """What the release adds to the meta.json of the scene's samples `keys`."""
        return {k: found_extras(self.ground, scene_id, k) for k in keys}

    def stats_rows(self) -> list[dict[str, Any]]:
        """What stats.json counts: split, label and captions of each released sample."""
        return [
            {"split": self.assignment[r["pass_id"]], "label": r["label"], "caption": r["caption"]}
            for r in self.rows
        ]


def release_plan(index: Mapping[str, SceneIndex], cfg: ReleaseConfig) -> ReleasePlan:
    """Splits and shards over the indexed scenes (sorted by id), digested with every sample's
    lineage and source_url: a shard committed under another digest is written again. Local
    inputs are named relative to the folder the indexed scenes' inputs share."""
    rows = [(sid, r) for sid in sorted(index) for r in index[sid].rows]
    samples = [SampleRef(sid, r["key"], r["pass_id"], r["label"]) for sid, r in rows]
    assignment = split_passes(samples, cfg.splits, cfg.balance)
    found = ground([r for _, r in rows], assignment, cfg.strict_splits)
    samples = [s for s in samples if (s.scene_id, s.key) not in found.withheld]
    shards = shard_plan(samples, assignment, cfg)
    urls = {sid: index[sid].source_url for sid in sorted(index)}
    root = catalogue_root([u for u in urls.values() if u])
    sources = {sid: portable_url(u, root) if u else "" for sid, u in urls.items()}
    lineage = {f"{sid}/{r['key']}": {**r["lineage"], "source_url": sources[sid]} for sid, r in rows}
    if cfg.writers:  # an upgraded writer: another generation, never new files in this one
        lineage["writers"] = {"versions": writers.versions(cfg.writers)}
    digest = plan_digest(shards, cfg, lineage)
    released = [
        {
            **r,
            "caption": r["caption"] or {},
            **found_extras(found, sid, r["key"]),
            "optical_gap_days": sample_gap(r, cfg) if r.get("optical_source") else None,
        }
        for sid, r in rows
        if r["pass_id"] in assignment and (sid, r["key"]) not in found.withheld
    ]
    return ReleasePlan(samples, assignment, shards, digest, released, index, sources, found)


def sample_gap(row: Mapping[str, Any], cfg: ReleaseConfig) -> int | None:
    """Days from the optical imagery (release.optical_date) to the sample's SAR collect."""
    return date_gap_days(row["acquisition"].get("collect_start"), cfg.optical_date)


def found_extras(found: Ground, scene_id: str, key: str) -> dict[str, Any]:
    """A sample's grid cell and group."""
    return {"grid": found.grid[(scene_id, key)], "group": found.group[(scene_id, key)]}


def release_manifest(
    plan: ReleasePlan,
    markers: Mapping[str, dict[str, Any]],
    cfg: ReleaseConfig,
    complete: bool,
    catalogue: dict[str, Any],
) -> dict[str, Any]:
    """manifest.json: the plan's committed shards with their sha256, splits, caption counts."""
    captioned = sum(1 for r in plan.rows if r["caption"])
    return {
        "dataset": "sarlo-dask release",
        "version": __version__,
        "release_config": cfg.digest(),
        "plan": plan.digest,
        "complete": complete,
        "samples": len(plan.samples),
        "scenes": dict(sorted(Counter(r["scene_id"] for r in plan.rows).items())),
        "bytes": sum(m["bytes"] for m in markers.values()),
        "captions": {"captioned": captioned, "without": len(plan.rows) - captioned},
        "splits": split_report(plan.samples, plan.assignment, cfg.splits),
        "shards": [
            {k: markers[s.path][k] for k in ("shard", "sha256", "bytes", "samples")}
            for s in plan.shards
            if s.path in markers
        ],
        "catalogue": catalogue,
        "terms": {
            "licence": cfg.licence,
            "optical_licence": cfg.optical_licence,
            "optical_attribution": cfg.optical_attribution,
        },
    }


def sample_members(
    work: Store,
    scene_id: str,
    key: str,
    split: str,
    scene: Mapping[str, Any],
    cfg: ReleaseConfig,
) -> dict[str, Buffer]:
    """The members of one sample (without the `key.` prefix), meta.json completed with its
    captions, label, split and provenance."""
    meta = work.read_json(work.tile_member(scene_id, key, "meta.json"))
    rec, damaged = caption_record(work, scene_id, meta, scene.get("captions"))
    fs, base = work.filesystem(work.tile_dir(scene_id))
    local = is_local(fs)

    def member(name: str) -> Buffer:  # verified against the digest its meta.json records
        path = f"{base}/{key}.{name}"
        try:
            data = mapped(path) if local else bytes(fs.cat_file(path))
        except FileNotFoundError:
            damaged.append(tile_damage(scene_id, key, name, "missing"))
            return b""
        damaged.extend(verify_member(scene_id, key, name, data, meta))
        return data

    fmt = meta["preview"]["format"]
    out = {f"sar.{fmt}": member(f"sar.{fmt}"), "sar.npy": member("sar.npy")}
    if cfg.include_optical and meta["optical"].get("status") == "ok":
        out["optic.png"] = member("optic.png")
    out["sicd.xml"] = member("sicd.xml")  # the chip's own SICD (sarlo_dask.geometry.chip)
    if "landcover" in meta:  # tiles.landcover: the class map
        out["landcover.png"] = member("landcover.png")
    if damaged:
        raise DamagedError(damaged)
    meta.pop("members", None)
    meta.pop("digests", None)
    meta["caption"] = rec.get("caption")
    meta["caption_signals"] = caption_signals(meta["caption"], rec.get("caption_raw"))
    meta["label"] = rec.get("label")
    if meta["caption"] is None:
        meta["caption_reason"] = rec.get("reason") or NO_MODEL
        meta["label_reason"] = "no caption to label"
    meta["split"] = split
    meta.update(scene["samples"][key])  # grid, group: what the release knows of its ground
    if meta["optical"].get("source") is not None:  # the source's terms travel with the sample
        meta["optical"]["licence"] = cfg.optical_licence
        meta["optical"]["attribution"] = cfg.optical_attribution
        meta["optical"]["date"] = cfg.optical_date.isoformat() if cfg.optical_date else None
        meta["optical"]["date_gap_days"] = sample_gap(meta, cfg)
    meta["schema_version"] = SCHEMA_VERSION  # the released form (its tile may be older)
    meta["source_url"] = scene["source_url"]  # relative to the catalogue root when local
    spacing = meta["acquisition"]["spacing_m"]["output"]
    meta["operation_sampling"] = (
        f"band-limited FFT resampling to {spacing['azimuth']:g} m (azimuth) x "
        f"{spacing['range']:g} m (slant range)"
    )
    provenance = scene.get("provenance")
    meta["provenance"] = {
        **meta.get("provenance", {}),
        "package": "sarlo-dask",
        "version": __version__,
        "caption_model": rec.get("model"),
        "caption_config": rec.get("caption_config"),
        "scene_provenance": json.loads(provenance) if isinstance(provenance, str) else provenance,
        "release_config": cfg.digest(),
    }
    out["meta.json"] = json.dumps(meta, indent=1, sort_keys=True).encode()
    return dict(sorted(out.items()))


def write_shard(
    spec: ShardSpec,
    work: Store,
    out: Store,
    scenes: Mapping[str, Mapping[str, Any]],
    digest: str,
    cfg: ReleaseConfig,
) -> dict[str, Any]:
    """Write one whole shard, then its commit marker; return the marker's content."""
    fs, path = out.filesystem(out.path(spec.path))
    local = is_local(fs)
    folder = os.path.dirname(path) if local else None
    if folder:  # renamed into place: the same folder
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + PARTIAL, dir=folder)
    else:  # uploaded: staged where a later run removes what a killed one left
        fd, tmp = staging_file(os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as f:  # buffered: a write takes all it is given, or raises
            tar = ShardTar(f)
            try:
                for scene_id, key in spec.keys:
                    scene = scenes[scene_id]
                    tar.write(key, sample_members(work, scene_id, key, spec.split, scene, cfg))
            except BaseException:
                tar.abort()
                raise
            sha256 = tar.close()
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600: a release is read by others
        if local:
            os.replace(tmp, path)
        else:
            fs.put_file(tmp, path)  # S3 publishes an object only when its upload completes
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    marker = {
        "shard": spec.path,
        "sha256": sha256,
        "bytes": tar.size,
        "samples": len(spec.keys),
        "keys": [k for _, k in spec.keys],
        "members": tar.members,  # where each member's bytes lie: index.parquet has them
        "plan": digest,
    }
    out.write_json(shard_marker(out.path(spec.path)), marker)
    return marker


def committed(out: Store, spec: ShardSpec, digest: str) -> dict | None:
    """The marker of a shard an earlier run completed under the same plan, else None."""
    url = shard_marker(out.path(spec.path))
    if not out.exists(url):
        return None
    marker = out.read_json(url)
    return marker if marker.get("plan") == digest else None


def shard_damage(out: Store, marker: Mapping[str, Any], check: str = "sha256") -> str:
    """Why a committed shard is no longer what its marker lists ("": it is): gone, another
    size, or (`check` "sha256") other bytes."""
    fs, path = out.filesystem(out.path(marker["shard"]))
    fs.invalidate_cache()
    if not fs.exists(path):
        return "missing"
    size = fs.size(path)
    if size != marker["bytes"]:
        return f"{size} bytes, its marker lists {marker['bytes']}"
    if check == "sha256" and (got := read_shard(fs, path).sha256) != marker["sha256"]:
        return f"sha256 {got[:16]}..., its marker lists {marker['sha256'][:16]}..."
    return ""


@dataclass(frozen=True)
class ShardCommit:
    """A shard of the plan: its marker, and whether it was written now and why."""

    marker: dict[str, Any]
    written: bool
    damage: str = ""
    """why the committed shard it replaces was not reused ("": there was none)"""


def commit_shard(
    spec: ShardSpec,
    work: Store,
    out: Store,
    scenes: Mapping[str, Mapping[str, Any]],
    digest: str,
    cfg: ReleaseConfig,
    check: Literal["sha256", "size"] = "sha256",
) -> ShardCommit:
    """The shard `spec` of plan `digest` in `out` (a task): the committed one when its bytes
    are still its marker's, else written (again)."""
    marker = committed(out, spec, digest)
    damage = shard_damage(out, marker, check) if marker is not None else ""
    if marker is not None and not damage:
        return ShardCommit(marker, False)
    return ShardCommit(write_shard(spec, work, out, scenes, digest, cfg), True, damage)


def write_index(out: Store, rows: Sequence[Mapping[str, Any]]) -> dict:
    """Write {out}/index.parquet of the release's `rows` (unless it holds these bytes
    already); its manifest entry: path, sha256, bytes, rows."""
    data = index_parquet(rows)
    out.update_bytes(out.path(INDEX), data)
    return {
        "path": INDEX,
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
        "rows": len(rows),
    }
