"""The release: splits by satellite pass, a deterministic shard plan, WebDataset shards.

Layout: {out}/{split}/chunk_NNN/shard-NNNNN.tar, each followed by its commit marker
shard-NNNNN.done.json (sha256, size, keys, plan digest); then {out}/manifest.json and
{out}/stats.json. A shard is written by one task with webdataset's TarWriter at a fixed
mtime, to a temporary name first, so a reader never sees half a shard.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tarfile
import tempfile
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sarlo_dask import __version__
from sarlo_dask.caption_stage import NO_MODEL, caption_url
from sarlo_dask.config import ReleaseConfig
from sarlo_dask.dataset import shard_marker
from sarlo_dask.store import PARTIAL, filesystem, is_local, join, read_json, write_json
from sarlo_dask.tile_stage import tile_dir, tile_lineage

MTIME = 0
"""every tar member's mtime: the same samples give the same bytes"""


@dataclass(frozen=True)
class SampleRef:
    """What the planner needs of one sample."""

    scene_id: str
    key: str
    pass_id: str
    label: str


@dataclass(frozen=True)
class ShardSpec:
    split: str
    index: int
    path: str
    """relative to {out}"""
    keys: tuple[tuple[str, str], ...]
    """(scene_id, key) of each sample, in order"""


def total_variation(p: Mapping[str, float], q: Mapping[str, float]) -> float:
    """Half the L1 distance between two label distributions (0 same, 1 disjoint)."""
    return 0.5 * sum(abs(p.get(k, 0.0) - q.get(k, 0.0)) for k in set(p) | set(q))


def _shares(counts: Counter[str]) -> dict[str, float]:
    n = sum(counts.values())
    return {k: v / n for k, v in counts.items()} if n else {}


def split_passes(
    samples: Sequence[SampleRef], ratios: Mapping[str, float], balance: float = 1.0
) -> dict[str, str]:
    """Assign each satellite pass to one split: sizes near the ratios, label shares near the
    whole's. Greedy, largest pass first, ties to the earlier split: deterministic."""
    by_pass: dict[str, Counter[str]] = {}
    for ref in samples:
        by_pass.setdefault(ref.pass_id, Counter())[ref.label] += 1
    whole = _shares(sum(by_pass.values(), Counter()))
    splits = [name for name, r in ratios.items() if r > 0]
    counts: dict[str, Counter[str]] = {name: Counter() for name in splits}
    out: dict[str, str] = {}
    order = sorted(by_pass, key=lambda p: (-sum(by_pass[p].values()), p))
    done = 0
    for p in order:
        n = sum(by_pass[p].values())
        done += n
        best, best_cost = splits[0], float("inf")
        for cand in splits:
            cost = 0.0
            for split in splits:
                c = counts[split] + by_pass[p] if split == cand else counts[split]
                size = sum(c.values())
                cost += abs(size / done - ratios[split])
                cost += balance * (size / done) * total_variation(_shares(c), whole)
            if cost < best_cost - 1e-12:
                best, best_cost = cand, cost
        counts[best] += by_pass[p]
        out[p] = best
    return out


def split_report(
    samples: Sequence[SampleRef], assignment: Mapping[str, str], ratios: Mapping[str, float]
) -> dict[str, Any]:
    """Per split: passes, samples, label counts and total-variation distance to the whole."""
    whole = _shares(Counter(s.label for s in samples))
    report: dict[str, Any] = {}
    for split in ratios:
        chosen = [s for s in samples if assignment.get(s.pass_id) == split]
        labels = Counter(s.label for s in chosen)
        report[split] = {
            "ratio": ratios[split],
            "passes": sorted({s.pass_id for s in chosen}),
            "samples": len(chosen),
            "labels": dict(sorted(labels.items())),
            "label_distance": total_variation(_shares(labels), whole) if chosen else None,
        }
    return report


def shard_plan(
    samples: Sequence[SampleRef], assignment: Mapping[str, str], cfg: ReleaseConfig
) -> list[ShardSpec]:
    """Samples ordered by split, scene id and tile key, cut into shards of
    `samples_per_shard`, `shards_per_chunk` to a chunk folder."""
    plan = []
    for split in cfg.splits:
        chosen = sorted((s.scene_id, s.key) for s in samples if assignment.get(s.pass_id) == split)
        n = cfg.samples_per_shard
        for i in range(0, len(chosen), n):
            index = i // n
            path = f"{split}/chunk_{index // cfg.shards_per_chunk:03d}/shard-{index:05d}.tar"
            plan.append(ShardSpec(split, index, path, tuple(chosen[i : i + n])))
    return plan


def plan_digest(
    plan: Sequence[ShardSpec], cfg: ReleaseConfig, lineage: Mapping[str, Any] | None = None
) -> str:
    """What a shard's bytes depend on: the plan, the release settings and the settings every
    sample was made under (`lineage`, by key): a shard committed under another is rewritten."""
    text = json.dumps([[asdict(s) for s in plan], cfg.digest(), lineage or {}], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def scene_index(work: str, scene_id: str, so: dict[str, Any]) -> list[dict[str, Any]]:
    """Each kept tile of a scene: key, pass id, MID label, captions (for planning and stats)."""
    fs, root = filesystem(tile_dir(work, scene_id), so)
    fs.invalidate_cache()
    out = []
    for path in sorted(fs.glob(f"{root}/*.meta.json")):
        with fs.open(path, "rb") as f:
            meta = json.loads(f.read())
        if meta.get("optical", {}).get("retry"):
            continue  # an optical retry is still due: not a finished sample
        rec = _caption_record(work, scene_id, meta, so)
        out.append(
            {
                "key": meta["key"],
                "pass_id": meta["pass_id"],
                "label": rec.get("label") or "none",
                "caption": rec.get("caption"),
                "lineage": {**tile_lineage(meta), "caption_config": rec.get("caption_config")},
            }
        )
    return out


def _caption_record(
    work: str, scene_id: str, meta: dict[str, Any], so: dict[str, Any]
) -> dict[str, Any]:
    """The tile's caption record, if it describes this tile (made under the same settings)."""
    url = caption_url(work, scene_id, meta["key"])
    fs, path = filesystem(url, so)
    rec = read_json(url, so) if fs.exists(path) else {}
    return rec if rec.get("tile") == tile_lineage(meta) else {}


def sample_members(
    work: str,
    scene_id: str,
    key: str,
    split: str,
    scene: Mapping[str, Any],
    cfg: ReleaseConfig,
    so: dict[str, Any],
) -> dict[str, bytes]:
    """The members of one sample (without the `key.` prefix), meta.json completed with its
    captions, label, split and provenance."""
    root = tile_dir(work, scene_id)
    meta = read_json(join(root, f"{key}.meta.json"), so)
    rec = _caption_record(work, scene_id, meta, so)
    fs, base = filesystem(root, so)

    def member(name: str) -> bytes:
        return bytes(fs.cat_file(f"{base}/{key}.{name}"))

    fmt = meta["preview"]["format"]
    out = {f"sar.{fmt}": member(f"sar.{fmt}"), "sar.npy": member("sar.npy")}
    if cfg.include_optical and meta["optical"].get("status") == "ok":
        out["optic.png"] = member("optic.png")
    out["sicd.xml"] = member("sicd.xml")  # the chip's own SICD (sarlo_dask.chip)
    meta.pop("members", None)
    meta["caption"] = rec.get("caption")
    meta["label"] = rec.get("label")
    if meta["caption"] is None:
        meta["caption_reason"] = rec.get("reason") or NO_MODEL
    meta["split"] = split
    meta["city_id_satellite_pass"] = meta["pass_id"]
    meta["operation_sampling"] = "band-limited FFT resampling to 0.8 m (slant range)"
    meta["provenance"] = {
        **meta.get("provenance", {}),
        "package": "sarlo-dask",
        "version": __version__,
        "caption_model": rec.get("model"),
        "caption_config": rec.get("caption_config"),
        "scene_provenance": scene.get("provenance"),
        "release_config": cfg.digest(),
    }
    out["meta.json"] = json.dumps(meta, indent=1, sort_keys=True).encode()
    return dict(sorted(out.items()))


class _Hashing:
    """A write-only file that hashes, counts and writes what goes through it.

    The tar stream hands it 1 MiB blocks: each is written here and hashed, in order, by a
    second thread while the next samples are assembled (hashlib releases the GIL); at most
    four blocks wait for the hash."""

    def __init__(self, f: Any) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.f, self.sha, self.size = f, hashlib.sha256(), 0
        self.pool = ThreadPoolExecutor(1)
        self.pending: deque[Any] = deque()

    def write(self, data: bytes) -> int:
        data = bytes(data)  # the caller may reuse its buffer; the hash reads this later
        while len(self.pending) >= 4:
            self.pending.popleft().result()
        self.pending.append(self.pool.submit(self.sha.update, data))
        self.f.write(data)
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        pass

    def finish(self) -> str:
        """Wait for the hash of what was written; the sha256 hex digest."""
        while self.pending:
            self.pending.popleft().result()
        self.pool.shutdown()
        return self.sha.hexdigest()


@functools.cache
def _tar_writer() -> type:
    """The class, made on first use: importing webdataset imports torch."""
    import webdataset as wds

    class TarWriter(wds.TarWriter):
        """webdataset's TarWriter on a tar stream that writes 1 MiB blocks (the default
        stream hands its file one 10 KiB record per Python call); same bytes."""

        def __init__(self, fileobj: Any, **kwargs: Any) -> None:
            super().__init__(fileobj, **kwargs)  # its own stream: nothing written before close
            self.tarstream = tarfile.open(fileobj=fileobj, mode="w|", bufsize=1 << 20)
            self.tarstream.copybufsize = 1 << 20  # type: ignore[attr-defined]

    return TarWriter


def write_shard(
    spec: ShardSpec,
    work: str,
    out: str,
    scenes: Mapping[str, Mapping[str, Any]],
    digest: str,
    cfg: ReleaseConfig,
    so: dict[str, Any],
    out_so: dict[str, Any],
) -> dict[str, Any]:
    """Write one whole shard, then its commit marker; return the marker's content."""
    _TarWriter = _tar_writer()
    url = join(out, spec.path)
    fs, path = filesystem(url, out_so)
    local = is_local(fs)
    folder = os.path.dirname(path) if local else None
    if folder:
        os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + PARTIAL, dir=folder)
    try:
        with os.fdopen(fd, "wb", buffering=0) as raw:
            hashing = _Hashing(raw)
            try:
                with _TarWriter(hashing, mtime=MTIME, encoder=False) as tw:
                    for scene_id, key in spec.keys:
                        members = sample_members(
                            work, scene_id, key, spec.split, scenes[scene_id], cfg, so
                        )
                        tw.write({"__key__": key, **members})
            finally:
                sha256 = hashing.finish()
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
        "bytes": hashing.size,
        "samples": len(spec.keys),
        "keys": [k for _, k in spec.keys],
        "plan": digest,
    }
    write_json(shard_marker(join(out, spec.path)), marker, out_so)
    return marker


def prune_shards(out: str, plan: Sequence[ShardSpec], out_so: dict[str, Any]) -> list[str]:
    """Remove the shards (and markers) of an earlier plan that this plan does not have: a
    release holds exactly its plan's shards. The paths removed, relative to `out`."""
    fs, root = filesystem(out, out_so)
    fs.invalidate_cache()
    keep = {p.path for p in plan} | {shard_marker(p.path) for p in plan}
    stale = []
    for path in sorted(fs.glob(f"{root}/*/chunk_*/shard-*")):
        rel = path[len(root) :].lstrip("/")
        if rel.endswith((".tar", ".done.json")) and rel not in keep:
            fs.rm(path)
            stale.append(rel)
    return stale


def committed(out: str, spec: ShardSpec, digest: str, out_so: dict[str, Any]) -> dict | None:
    """The marker of a shard an earlier run completed under the same plan, else None."""
    url = shard_marker(join(out, spec.path))
    fs, path = filesystem(url, out_so)
    if not fs.exists(path):
        return None
    marker = read_json(url, out_so)
    return marker if marker.get("plan") == digest else None
