"""Samples of the same ground: footprint overlaps across passes, the split leakage they make,
shared group ids, and duplicates within a pass (pure functions of the release's rows).

A footprint is a tile's ground quadrilateral (GeoJSON, lon/lat). Two are compared in a plane
tangent to the WGS-84 ellipsoid at their mean latitude (east = N cos(lat0) dlon, north = M
dlat, N and M the ellipsoid's radii of curvature there): over a tile's few hundred metres the
plane's distortion is far below 1e-4 of an area.

- Leakage: every validation or test sample whose footprint overlaps a training sample (of
  another pass: a pass lies in one split) is named with the overlap's area; `strict` keeps
  those samples out of their split (withheld, listed with why), whatever their order.
- Groups: samples of different passes whose footprints share at least GROUP_SHARE of the
  smaller one's area are of the same ground: they share `group` (the first key of the
  connected set, in (scene, key) order), the dataset's multi-pass point, not an error.
- Duplicates within a pass: the same complex pixels (the sar.npy's sha256) are exact; the
  previews' perceptual hashes within NEAR_BITS bits are near.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sarlo_dask.geometry.grid import GRID_NAME, lon_offset, ring_points, sample_grid

WGS84_A = 6378137.0
WGS84_E2 = 6.69437999014e-3
GROUP_SHARE = 0.5
"""share of the smaller footprint two samples of different passes overlap to be one ground"""
NEAR_BITS = 6
"""most differing bits of two 64-bit preview hashes for a near duplicate"""


def plane(ring: Sequence[Sequence[float]], lat0: float, lon0: float) -> np.ndarray:
    """A GeoJSON ring (lon, lat; closed or not) as (n, 2) metres east/north of (lat0, lon0)."""
    pts = ring_points(ring)
    w = 1.0 - WGS84_E2 * math.sin(math.radians(lat0)) ** 2
    east = WGS84_A / math.sqrt(w) * math.cos(math.radians(lat0)) * math.pi / 180.0
    north = WGS84_A * (1.0 - WGS84_E2) / w**1.5 * math.pi / 180.0
    return np.stack([lon_offset(pts[:, 0], lon0) * east, (pts[:, 1] - lat0) * north], axis=1)


def area(poly: np.ndarray) -> float:
    """The area enclosed by a simple polygon of (n, 2) vertices (shoelace), m^2."""
    x, y = poly[:, 0], poly[:, 1]
    return abs(float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))) / 2.0


def overlap_area(ring_a: Sequence[Sequence[float]], ring_b: Sequence[Sequence[float]]) -> float:
    """The ground area two lon/lat footprints share, m^2 (0 when disjoint): their
    intersection (GEOS, through shapely) in the plane tangent at their mean latitude."""
    from shapely import Polygon, make_valid

    pts = [p for r in (ring_a, ring_b) for p in r]
    lat0 = sum(p[1] for p in pts) / len(pts)
    lon0 = pts[0][0]
    a, b = (make_valid(Polygon(plane(r, lat0, lon0))) for r in (ring_a, ring_b))
    return float(a.intersection(b).area)


def _box(ring: Sequence[Sequence[float]]) -> tuple[float, float, float, float]:
    pts = ring_points(ring)
    (west, south), (east, north) = pts.min(axis=0), pts.max(axis=0)
    return float(west), float(south), float(east), float(north)


def cross_pass_overlaps(rows: Sequence[Mapping[str, Any]]) -> list[tuple[int, int, float]]:
    """(i, j, area m^2), i < j, of every two rows of different passes whose footprints
    overlap; rows carry `pass_id` and `footprint`. Candidates by a sweep over the bounding
    boxes' west edges; a box reaching past 180 degrees east is entered once more, 360
    degrees west, so that footprints across the antimeridian meet)."""
    rings = [r["footprint"]["coordinates"][0] for r in rows]
    entries = []
    for i, ring in enumerate(rings):
        west, south, east, north = _box(ring)
        turn = 360.0 * ((west + 180.0) // 360.0)  # west into [-180, 180)
        west, east = west - turn, east - turn
        entries.append((west, south, east, north, i))
        if east > 180.0:
            entries.append((west - 360.0, south, east - 360.0, north, i))
    entries.sort()
    active: list[tuple[float, float, float, float, int]] = []
    found: dict[tuple[int, int], float] = {}
    for box in entries:
        active = [b for b in active if b[2] >= box[0]]
        i = box[4]
        for other in active:
            j = other[4]
            pair = (min(i, j), max(i, j))
            if j == i or rows[i]["pass_id"] == rows[j]["pass_id"] or pair in found:
                continue
            if other[1] > box[3] or box[1] > other[3]:
                continue
            found[pair] = overlap_area(rings[i], rings[j])
        active.append(box)
    return sorted((i, j, a) for (i, j), a in found.items() if a > 0)


def footprint_area(ring: Sequence[Sequence[float]]) -> float:
    """A lon/lat footprint's ground area, m^2."""
    return area(plane(ring, sum(p[1] for p in ring) / len(ring), ring[0][0]))


def groups(rows: Sequence[Mapping[str, Any]], pairs: Sequence[tuple[int, int, float]]) -> list[str]:
    """The group id of each row: rows joined (transitively) by pairs sharing at least
    GROUP_SHARE of the smaller footprint have the first one's `scene_id/key`."""
    parent = list(range(len(rows)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    sizes = [footprint_area(r["footprint"]["coordinates"][0]) for r in rows]
    for i, j, a in pairs:
        if a >= GROUP_SHARE * min(sizes[i], sizes[j]):
            ri, rj = find(i), find(j)
            if ri != rj:
                parent[max(ri, rj)] = min(ri, rj)
    name = lambda i: f"{rows[i]['scene_id']}/{rows[i]['key']}"  # noqa: E731
    return [name(find(i)) for i in range(len(rows))]


def leakage(
    rows: Sequence[Mapping[str, Any]],
    assignment: Mapping[str, str],
    pairs: Sequence[tuple[int, int, float]],
    train: str = "train",
) -> list[dict[str, Any]]:
    """Every sample outside `train` whose footprint overlaps a `train` sample: {scene_id,
    key, split, pass_id, area_m2 (the largest overlap), overlaps: [{scene_id, key, pass_id,
    area_m2}]}, in (scene, key) order."""
    found: dict[int, list[tuple[int, float]]] = {}
    for i, j, a in pairs:
        si, sj = assignment.get(rows[i]["pass_id"]), assignment.get(rows[j]["pass_id"])
        for held, other, s_held, s_other in ((i, j, si, sj), (j, i, sj, si)):
            if s_held not in (None, train) and s_other == train:
                found.setdefault(held, []).append((other, a))
    out = []
    for i in sorted(found, key=lambda i: (rows[i]["scene_id"], rows[i]["key"])):
        hits = sorted(found[i], key=lambda h: (rows[h[0]]["scene_id"], rows[h[0]]["key"]))
        r = rows[i]
        out.append(
            {
                "scene_id": r["scene_id"],
                "key": r["key"],
                "split": assignment[r["pass_id"]],
                "pass_id": r["pass_id"],
                "area_m2": round(max(a for _, a in hits), 1),
                "overlaps": [
                    {
                        "scene_id": rows[j]["scene_id"],
                        "key": rows[j]["key"],
                        "pass_id": rows[j]["pass_id"],
                        "area_m2": round(a, 1),
                    }
                    for j, a in hits
                ],
            }
        )
    return out


def duplicates(rows: Sequence[Mapping[str, Any]], near_bits: int = NEAR_BITS) -> dict[str, Any]:
    """Within each pass: `exact` sets of samples with the same complex pixels (`sar_sha256`),
    `near` pairs whose preview hashes (`phash`, 16 hex digits) differ in <= near_bits bits,
    and how many samples had no hash (made before schema 2.4)."""
    exact: dict[tuple[str, str], list[str]] = {}
    hashed: dict[str, list[tuple[str, int]]] = {}
    without = 0
    for r in rows:
        name = f"{r['scene_id']}/{r['key']}"
        if r.get("sar_sha256"):
            exact.setdefault((r["pass_id"], r["sar_sha256"]), []).append(name)
        if r.get("phash"):
            hashed.setdefault(r["pass_id"], []).append((name, int(r["phash"], 16)))
        else:
            without += 1
    near = []
    for pass_id, items in sorted(hashed.items()):
        items.sort()
        for a in range(len(items)):
            for b in range(a + 1, len(items)):
                bits = (items[a][1] ^ items[b][1]).bit_count()
                if bits <= near_bits:
                    near.append(
                        {"pass_id": pass_id, "a": items[a][0], "b": items[b][0], "bits": bits}
                    )
    return {
        "exact": [sorted(v) for _, v in sorted(exact.items()) if len(v) > 1],
        "near": near,
        "near_bits": near_bits,
        "without_hash": without,
    }


@dataclass(frozen=True)
class Ground:
    """What the release knows of its samples' ground: per sample (scene_id, key) its grid
    cell and group, the leakage report, the samples `strict` withholds, the duplicates."""

    grid: dict[tuple[str, str], dict[str, Any]]
    group: dict[tuple[str, str], str]
    leakage: list[dict[str, Any]]
    withheld: frozenset[tuple[str, str]]
    duplicates: dict[str, Any]

    def report(self, strict: bool) -> dict[str, Any]:
        """stats.json's `ground` section."""
        sizes = Counter(self.group.values())
        return {
            "grid": GRID_NAME,
            "group_share": GROUP_SHARE,
            "groups": len(sizes),
            "groups_of_several": sum(1 for n in sizes.values() if n > 1),
            "leakage": {
                "samples": len(self.leakage),
                "strict_splits": strict,
                "withheld": len(self.withheld),
                "overlaps": self.leakage,
            },
            "duplicates": self.duplicates,
        }


def ground(
    rows: Sequence[Mapping[str, Any]], assignment: Mapping[str, str], strict: bool
) -> Ground:
    """The Ground of the release's rows (scene_id, key, pass_id, footprint; quality.phash and
    sar_sha256 when known) under the pass -> split `assignment`."""
    keys = [(r["scene_id"], r["key"]) for r in rows]
    pairs = cross_pass_overlaps(rows)
    leaks = leakage(rows, assignment, pairs)
    withheld = frozenset((x["scene_id"], x["key"]) for x in leaks) if strict else frozenset()
    kept = [i for i, k in enumerate(keys) if k not in withheld]  # groups name released ones
    at = {i: n for n, i in enumerate(kept)}
    kept_pairs = [(at[i], at[j], a) for i, j, a in pairs if i in at and j in at]
    kept_rows = [rows[i] for i in kept]
    dup_rows = [{**r, "phash": (r.get("quality") or {}).get("phash")} for r in kept_rows]
    return Ground(
        grid={k: sample_grid(r["footprint"]) for k, r in zip(keys, rows, strict=True)},
        group=dict(zip([keys[i] for i in kept], groups(kept_rows, kept_pairs), strict=True)),
        leakage=leaks,
        withheld=withheld,
        duplicates=duplicates(dup_rows),
    )
