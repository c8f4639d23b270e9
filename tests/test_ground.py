"""What the release knows of its samples' ground, against independent references: the grid
key against Major TOM's published algorithm (run literally, as its grid.py builds its rows and
columns) and one of its published cells; footprint overlaps against shapely and pyproj's
geodesic areas; the preview hash against imagehash; saturation on sarpy SICDs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sarlo_dask.geometry.grid import cell_corner, cell_id, cell_of, sample_grid
from sarlo_dask.geometry.quality import phash, saturated_fraction
from sarlo_dask.release.overlap import (
    cross_pass_overlaps,
    duplicates,
    footprint_area,
    groups,
    leakage,
    overlap_area,
)


class MajorTomGrid:
    """Major TOM's grid as its grid.py builds it (linspace, mod, sort, searchsorted), 10 km."""

    def __init__(self, dist: float = 10.0) -> None:
        n = math.ceil(math.pi * 6378.137 / dist)
        lats = np.sort(np.mod(np.linspace(-90, 90, n + 1)[:-1], 180) - 90)
        zero = int(np.searchsorted(lats, 0))
        self.rows = [f"{i - zero}U" if i >= zero else f"{zero - i}D" for i in range(len(lats))]
        keep = (lats >= -85) & (lats <= 85)
        self.lats = lats[keep]
        self.rows = [r for r, k in zip(self.rows, keep, strict=True) if k]
        self.dist = dist

    def columns(self, lat: float) -> tuple[list[str], np.ndarray]:
        m = math.ceil(2 * math.pi * 6378.137 * math.cos(lat * math.pi / 180) / self.dist)
        lons = np.sort(np.mod(np.linspace(-180, 180, m + 1)[:-1], 360) - 180)
        zero = int(np.where(lons == 0)[0][0])
        return [f"{i - zero}R" if i >= zero else f"{zero - i}L" for i in range(len(lons))], lons

    def cell(self, lat: float, lon: float) -> str:
        r = int(np.searchsorted(self.lats, lat)) - 1
        cols, lons = self.columns(float(self.lats[r]))
        return f"{self.rows[r]}_{cols[int(np.searchsorted(lons, lon)) - 1]}"


def test_grid_cells_are_major_toms():
    """2000 random points within +-84 deg and every point near the antimeridian and the
    equator: the cell is the one Major TOM's algorithm gives; a published Major TOM cell
    (Core-S2L2A's 451U_946L, an S2 product of tile T12TVK over Snowbird, Utah) holds Snowbird;
    a cell's own corner lies in it; beyond +-85 deg there is none, with why."""
    ref = MajorTomGrid()
    rng = np.random.default_rng(3)
    points = [(rng.uniform(-84, 84), rng.uniform(-180, 180)) for _ in range(2000)]
    points += [(lat, lon) for lat in (-0.04, 0.04, 45.0) for lon in (-179.99, 179.99, 0.01)]
    for lat, lon in points:
        row, col = cell_of(lat, lon)
        assert cell_id(row, col) == ref.cell(lat, lon), (lat, lon)
    snowbird = (40.5830, -111.6556)
    assert cell_id(*cell_of(*snowbird)) == "451U_946L" == ref.cell(*snowbird)
    lat0, lon0 = cell_corner(451, -946)
    assert cell_of(lat0 + 1e-6, lon0 + 1e-6) == (451, -946)
    assert cell_of(-84.99, 10.0) is None  # below Major TOM's last row line (-85 deg)
    ring = [[2.2, 89.0], [2.3, 89.0], [2.3, 89.1], [2.2, 89.0]]
    far = sample_grid({"type": "Polygon", "coordinates": [ring]})
    assert far["cell"] is None and "85" in far["reason"]


def quad(lon: float, lat: float, size_m: float, angle: float, stretch: float = 1.0) -> list:
    """A closed ring: a rotated rectangle of size_m x (stretch * size_m) centred at lon/lat."""
    c, s = math.cos(angle), math.sin(angle)
    out = []
    for x, y in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
        e, n = size_m / 2 * (x * c - y * stretch * s), size_m / 2 * (x * s + y * stretch * c)
        out.append([lon + e / (111320 * math.cos(math.radians(lat))), lat + n / 110574])
    return [*out, out[0]]


def test_footprint_overlaps_against_shapely_and_geodesic_areas():
    """Random rotated tiles near each other at several latitudes: the overlap area is pyproj's
    geodesic area of shapely's intersection within 0.2 %, disjoint ones give 0; footprint areas
    within 0.2 % too; the sweep finds every overlapping pair of different passes (shapely)."""
    from pyproj import Geod
    from shapely.geometry import Polygon

    geod = Geod(ellps="WGS84")
    rng = np.random.default_rng(5)
    rows = []
    for lat in (-60.0, 0.5, 48.7):
        for i in range(12):
            lon = 2.0 + rng.uniform(0, 0.02)
            ring = quad(lon, lat + rng.uniform(0, 0.01), 820.0, rng.uniform(0, 3), 1.3)
            rows.append({"pass_id": f"p{i % 3}", "footprint": {"coordinates": [ring]}})
    rings = [r["footprint"]["coordinates"][0] for r in rows]
    shapes = [Polygon(ring) for ring in rings]
    for ring, shape in zip(rings, shapes, strict=True):
        assert footprint_area(ring) == pytest.approx(
            abs(geod.geometry_area_perimeter(shape)[0]), rel=2e-3
        )
    expected = {}
    for i in range(len(rows)):
        for j in range(i + 1, len(rows)):
            inter = shapes[i].intersection(shapes[j])
            ref = abs(geod.geometry_area_perimeter(inter)[0]) if not inter.is_empty else 0.0
            got = overlap_area(rings[i], rings[j])
            assert got == pytest.approx(ref, rel=2e-3, abs=1e-3), (i, j)
            if ref > 1.0 and rows[i]["pass_id"] != rows[j]["pass_id"]:
                expected[(i, j)] = ref
    found = {(i, j): a for i, j, a in cross_pass_overlaps(rows) if a > 1.0}
    assert set(found) == set(expected) and len(expected) > 10


def test_leakage_and_groups_of_a_constructed_overlap():
    """Pass A in train; pass B (test) overlaps A's first tile by a known 40 % and lies apart
    from its second; pass C (validation) covers A's second tile whole. The report names B's
    and C's overlapping samples with their areas, not B's lone one; groups join A1-B1 (40 % is
    under half: no) and A2-C1 (yes)."""
    lat, lon = 48.7, 2.2
    d_lon = 820.0 / (111320 * math.cos(math.radians(lat)))
    a1, a2 = quad(lon, lat, 820, 0), quad(lon + 3 * d_lon, lat, 820, 0)
    b1, b2 = quad(lon + 0.6 * d_lon, lat, 820, 0), quad(lon + 10 * d_lon, lat, 820, 0)
    c1 = quad(lon + 3 * d_lon, lat, 820, 0)
    rows = [
        {"scene_id": s, "key": k, "pass_id": p, "footprint": {"coordinates": [ring]}}
        for s, k, p, ring in (
            ("A", "t0", "pa", a1),
            ("A", "t1", "pa", a2),
            ("B", "t0", "pb", b1),
            ("B", "t1", "pb", b2),
            ("C", "t0", "pc", c1),
        )
    ]
    assignment = {"pa": "train", "pb": "test", "pc": "validation"}
    pairs = cross_pass_overlaps(rows)
    report = leakage(rows, assignment, pairs)
    assert [(x["scene_id"], x["key"]) for x in report] == [("B", "t0"), ("C", "t0")]
    tile = footprint_area(a1)
    assert report[0]["area_m2"] == pytest.approx(0.4 * tile, rel=0.01)
    assert report[0]["overlaps"][0]["key"] == "t0" and report[1]["area_m2"] == pytest.approx(
        tile, rel=1e-3
    )
    assert groups(rows, pairs) == ["A/t0", "A/t1", "B/t0", "B/t1", "A/t1"]


def test_duplicates_within_a_pass():
    rows = [
        {
            "scene_id": "s",
            "key": "a",
            "pass_id": "p",
            "sar_sha256": "x",
            "phash": "ffff0000ffff0000",
        },
        {
            "scene_id": "s",
            "key": "b",
            "pass_id": "p",
            "sar_sha256": "x",
            "phash": "ffff0000ffff0003",
        },
        {
            "scene_id": "s",
            "key": "c",
            "pass_id": "p",
            "sar_sha256": "y",
            "phash": "0000ffff0000ffff",
        },
        {
            "scene_id": "t",
            "key": "a",
            "pass_id": "q",
            "sar_sha256": "x",
            "phash": "ffff0000ffff0000",
        },
        {"scene_id": "t", "key": "b", "pass_id": "q", "sar_sha256": "z"},
    ]
    found = duplicates(rows)
    assert found["exact"] == [["s/a", "s/b"]]  # the same pixels in another pass: not within
    assert found["near"] == [{"pass_id": "p", "a": "s/a", "b": "s/b", "bits": 2}]
    assert found["without_hash"] == 1


def test_preview_hash_is_imagehash_phash():
    """The hash of speckle, of a bright square on speckle and of a ramp is imagehash's phash,
    bit for bit; a shifted speckle preview differs from its own by more than the near
    threshold, a slightly brighter copy by less."""
    import imagehash
    from PIL import Image

    rng = np.random.default_rng(8)
    speckle = np.clip(rng.exponential(60, (256, 256)), 1, 255).astype(np.uint8)
    square = speckle.copy()
    square[64:160, 80:200] = 250
    ramp = np.tile(np.linspace(1, 255, 300).astype(np.uint8), (200, 1))
    for img in (speckle, square, ramp):
        assert phash(img) == str(imagehash.phash(Image.fromarray(img)))
    other = np.clip(rng.exponential(60, (256, 256)), 1, 255).astype(np.uint8)
    bits = lambda a, b: (int(phash(a), 16) ^ int(phash(b), 16)).bit_count()  # noqa: E731
    assert bits(square, np.clip(square.astype(int) + 3, 0, 255).astype(np.uint8)) <= 6
    assert bits(speckle, other) > 6


def test_saturated_fraction_by_pixel_type():
    """RE16I_IM16I: pixels with a component at +-32767 (and only valid ones) count; float
    pixels have no full scale (None, with why)."""
    from sarlo_dask.geometry.sicd import sicd_from_xml

    from .conftest import SICD_XML, corpus_missing

    if why := corpus_missing(SICD_XML):
        pytest.skip(why)
    xml = (SICD_XML / "tsx1_sl_rma_bavaria_chip5x5.xml").read_text()
    tsx = sicd_from_xml(xml)
    assert str(tsx.ImageData.PixelType) == "RE16I_IM16I"
    z = np.full((10, 10), 100 + 50j, np.complex64)
    z[0, :5] = 32767 + 0j
    z[1, :3] = 10 - 32767j
    valid = np.ones((10, 10), bool)
    valid[1] = False
    frac, why = saturated_fraction(z, valid, tsx)
    assert frac == pytest.approx(5 / 90) and "32767" in why
    umbra = sicd_from_xml((SICD_XML / "umbra04_spot_pfa_melbourne_tile512.xml").read_text())
    assert saturated_fraction(z, None, umbra) == (None, "RE32F_IM32F pixels have no full scale")


def _released(out):
    """(stats.json, index rows with shapely footprints) of the release in `out`."""
    import json

    import pyarrow.parquet as pq
    from shapely import wkb

    man = json.loads((out / "manifest.json").read_text())
    gen = out / man["generation"]
    rows = pq.read_table(gen / "index.parquet").to_pylist()
    for r in rows:
        r["shape"] = wkb.loads(r["geometry"])
    return json.loads((gen / "stats.json").read_text()), rows, man


def _leaks(rows) -> dict[str, set[str]]:
    """Every validation/test sample's overlapping train samples (shapely, area > 1 m^2)."""
    from pyproj import Geod

    geod = Geod(ellps="WGS84")
    train = [r for r in rows if r["split"] == "train"]
    out: dict[str, set[str]] = {}
    for r in rows:
        if r["split"] == "train":
            continue
        for t in train:
            inter = r["shape"].intersection(t["shape"])
            if not inter.is_empty and abs(geod.geometry_area_perimeter(inter)[0]) > 1.0:
                out.setdefault(f"{r['scene_id']}/{r['key']}", set()).add(
                    f"{t['scene_id']}/{t['key']}"
                )
    return out


def test_the_release_reports_leakage_and_strict_splits_keeps_it_out(
    release_setup, release_built, tmp_path
):
    """The reference release's three passes image the same ground: stats.json names every
    validation/test sample overlapping a train sample, with the same partners as shapely finds
    (areas within 0.2 % of pyproj's geodesic ones); the index's grid cells are Major TOM's.
    `sarlo build --strict-splits --include-optical` is refused (exit 2, one line, nothing
    written) without the optical source's licence; with `--optical-licence` it releases no
    validation/test sample overlapping train, withholds exactly those the report named, puts
    the licence in every meta.json with an optical view, and a second run gives the same
    bytes."""
    import json
    import shutil
    import subprocess
    import sys
    from datetime import date

    from pyproj import Geod

    from sarlo_dask.captions.stats import words

    from .helpers import tree

    out_ref, _ = release_built
    stats, rows, man = _released(out_ref)
    report = stats["ground"]["leakage"]
    expected = _leaks(rows)
    assert expected  # the passes overlap: there is leakage to find
    got = {f"{x['scene_id']}/{x['key']}": x for x in report["overlaps"]}
    assert set(got) == set(expected) and report["samples"] == len(expected)
    assert not report["strict_splits"] and report["withheld"] == 0
    geod, shapes = Geod(ellps="WGS84"), {f"{r['scene_id']}/{r['key']}": r["shape"] for r in rows}
    for name, x in got.items():
        partners = {f"{o['scene_id']}/{o['key']}" for o in x["overlaps"]}
        assert partners == expected[name]
        for o in x["overlaps"]:
            inter = shapes[name].intersection(shapes[f"{o['scene_id']}/{o['key']}"])
            area = abs(geod.geometry_area_perimeter(inter)[0])
            assert o["area_m2"] == pytest.approx(area, rel=2e-3, abs=0.2)
    ref = MajorTomGrid()
    for r in rows:
        ring = list(r["shape"].exterior.coords)[:-1]
        lat, lon = np.mean([p[1] for p in ring]), np.mean([p[0] for p in ring])
        assert r["grid_cell"] == ref.cell(lat, lon) and r["group"]
    assert stats["ground"]["groups_of_several"] > 0  # the same ground seen by several passes

    import yaml

    root, urls, config = release_setup
    work = tmp_path / "work"
    shutil.copytree(root / "work", work)
    settings = yaml.safe_load(config.read_text())
    settings["release"] |= {"optical_date": "2025-05-01", "optical_attribution": "sim"}
    config = tmp_path / "build.yaml"
    config.write_text(yaml.safe_dump(settings))
    sarlo = [sys.executable, "-m", "sarlo_dask.cli", "build", *urls, "--work", str(work)]
    opts = ["--config", str(config), "--workers", "2", "--strict-splits", "--include-optical"]
    refused = subprocess.run(
        [*sarlo, "--out", str(tmp_path / "out0"), *opts], capture_output=True, text=True
    )
    assert refused.returncode == 2, refused.stdout + refused.stderr
    line = refused.stderr.strip()
    assert "\n" not in line and "optical_licence" in line and "licence" in line, line
    assert not (tmp_path / "out0").exists()
    trees = []
    for name in ("out1", "out2"):
        run = subprocess.run(
            [*sarlo, "--out", str(tmp_path / name), *opts, "--optical-licence", "CC-BY-4.0"],
            capture_output=True,
            text=True,
        )
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        trees.append(tree(tmp_path / name))
    assert trees[0] == trees[1]  # the same inputs and settings: the same bytes
    stats1, rows1, man1 = _released(tmp_path / "out1")
    assert not _leaks(rows1)
    names1 = {f"{r['scene_id']}/{r['key']}" for r in rows1}
    assert names1 == {f"{r['scene_id']}/{r['key']}" for r in rows} - set(expected)
    leak1 = stats1["ground"]["leakage"]
    assert (
        leak1["strict_splits"]
        and leak1["withheld"] == len(expected) == man["samples"] - man1["samples"]
    )
    import webdataset as wds

    gen = tmp_path / "out1" / man1["generation"]
    optic = 0
    for shard in sorted(gen.rglob("*.tar")):
        for sample in wds.WebDataset(str(shard), shardshuffle=False):
            meta = json.loads(sample["meta.json"])
            assert meta["optical"]["licence"] == "CC-BY-4.0"
            assert meta["optical"]["attribution"] == "sim"
            sar_day = date.fromisoformat(meta["acquisition"]["collect_start"][:10])
            gap = (sar_day - date(2025, 5, 1)).days
            assert (
                meta["optical"]["date"] == "2025-05-01" and meta["optical"]["date_gap_days"] == gap
            )
            row = next(
                r for r in rows1 if r["key"] == meta["key"] and r["scene_id"] == meta["scene_id"]
            )
            assert row["optical_gap_days"] == gap
            signals = meta["caption_signals"]
            if meta["caption"]:
                assert {k: v["words"] for k, v in signals.items()} == {
                    k: len(words(t)) for k, t in meta["caption"].items()
                }
                assert row["caption_hedges"] == sum(v["hedges"] for v in signals.values())
            else:
                assert signals is None
            assert meta["grid"]["cell"] == next(
                r["grid_cell"]
                for r in rows1
                if r["key"] == meta["key"] and r["scene_id"] == meta["scene_id"]
            )
            optic += "optic.png" in sample
    assert optic > 0


def test_caption_signals_count_words_and_the_hedges_the_model_wrote():
    from sarlo_dask.captions.clean import clean, hedges
    from sarlo_dask.captions.stats import caption_signals

    raw = "A road crosses fields. It may be a river, possibly a canal. Houses appear to line it."
    assert hedges(raw) == 3  # may, possibly, appear
    caption = {"MID": clean(raw)}
    assert caption["MID"] == "A road crosses fields."
    assert caption_signals(caption, {"MID": raw}) == {
        "MID": {"words": 4, "raw_words": 17, "hedges": 3}
    }
    assert caption_signals(caption, None) == {"MID": {"words": 4}}  # a record of an older build
    assert caption_signals(None, {"MID": raw}) is None


def test_overlaps_across_the_antimeridian_and_groups_of_released_samples_only():
    """Two passes' tiles straddling 180 degrees, each ring starting on its own side, are found
    overlapping with overlap_area's area; under strict splits the withheld sample is no group's
    name and no duplicate's."""
    from sarlo_dask.release.overlap import ground

    a = quad(179.999, -17.0, 820, 0)
    b = [[p[0] - 360.0 if p[0] > 180 else p[0], p[1]] for p in quad(180.002, -17.0, 820, 0)]
    b = b[1:4] + b[0:2]  # the same ring, starting at a vertex west of 180 deg, closed
    assert a[0][0] > 0 > b[0][0]
    rows = [
        {"scene_id": "A", "key": "t0", "pass_id": "pa", "footprint": {"coordinates": [a]}},
        {"scene_id": "B", "key": "t0", "pass_id": "pb", "footprint": {"coordinates": [b]}},
    ]
    pairs = cross_pass_overlaps(rows)
    assert len(pairs) == 1 and pairs[0][2] == pytest.approx(overlap_area(a, b))
    assert pairs[0][2] > 1e5
    found = ground(rows, {"pa": "test", "pb": "train"}, strict=True)
    assert found.withheld == {("A", "t0")}
    assert found.group == {("B", "t0"): "B/t0"}
    assert ground(rows, {"pa": "test", "pb": "train"}, strict=False).group == {
        ("A", "t0"): "A/t0",
        ("B", "t0"): "A/t0",
    }
