"""Split and shard planning: whole satellite passes go to one split, label-balanced; a
deterministic shard plan over the samples; the digest a committed shard is checked against."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sarlo_dask.config import ReleaseConfig

RELEASE_FORMAT = 4
"""of shards and their markers (2: markers list each member's offset; 3: and its sha256,
which index.parquet holds for range reads; 4: meta.json holds the sample's grid cell and
group, schema 2.4); in every plan digest,
so a release of another format is rewritten, never mixed"""


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
    parts = [RELEASE_FORMAT, [asdict(s) for s in plan], cfg.digest(), lineage or {}]
    text = json.dumps(parts, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
