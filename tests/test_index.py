"""{out}/index.parquet against what it indexes: one row per sample, footprints and member
offsets equal to the shards' own bytes, filters in pyarrow and DuckDB equal to a scan of every
meta.json, and `dataset.open(..., where=...)` reading only the shards that hold matches."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from sarlo_dask import dataset
from sarlo_dask.io.index import wkb_polygon


@pytest.fixture(scope="module")
def metas(release_built):
    out = release_built[0]
    return {m["key"]: m for m in dataset.iter_meta(str(out))}


def _box_of(metas, key, margin=1e-4):
    lon = [p[0] for p in metas[key]["footprint"]["coordinates"][0]]
    lat = [p[1] for p in metas[key]["footprint"]["coordinates"][0]]
    return min(lon) - margin, min(lat) - margin, max(lon) + margin, max(lat) + margin


def _intersects(meta, box):
    ring = meta["footprint"]["coordinates"][0]
    lon, lat = [p[0] for p in ring], [p[1] for p in ring]
    return min(lon) <= box[2] and max(lon) >= box[0] and min(lat) <= box[3] and max(lat) >= box[1]


def test_one_row_per_sample_listed_in_the_manifest(release_built, metas):
    out = release_built[0]
    data = (Path(dataset.release_root(str(out))) / "index.parquet").read_bytes()
    manifest = json.loads((out / "manifest.json").read_text())
    entry = manifest["index"]
    assert entry["sha256"] == hashlib.sha256(data).hexdigest() and entry["bytes"] == len(data)
    table = dataset.index(str(out))
    keys = table.column("key").to_pylist()
    assert len(keys) == len(set(keys)) == manifest["samples"] == entry["rows"] == len(metas)
    assert set(keys) == set(metas)
    geo = json.loads(table.schema.metadata[b"geo"])
    assert geo["primary_column"] == "geometry"
    assert geo["columns"]["geometry"]["encoding"] == "WKB"
    for row in table.to_pylist():
        meta = metas[row["key"]]
        assert row["split"] == meta["split"] and row["pass_id"] == meta["pass_id"]
        assert row["polarization"] == meta["acquisition"]["polarization"]
        assert row["enl"] == meta["quality"]["enl"]
        ring = [list(p) for p in wkb_polygon(row["geometry"])[0]]
        assert ring == meta["footprint"]["coordinates"][0]
        # each member's offset and size point at its bytes in the shard
        shard = (Path(dataset.release_root(str(out))) / row["shard"]).read_bytes()
        sizes = {m["name"]: (m["offset"], m["size"]) for m in row["members"]}
        assert {"sar.npy", "sar.png", "meta.json", "sicd.xml"} <= set(sizes)
        off, size = sizes["meta.json"]
        assert json.loads(shard[off : off + size]) == meta


def test_filters_in_pyarrow_and_duckdb_equal_a_scan_of_every_meta(release_built, metas):
    import duckdb
    import pyarrow.compute as pc

    out = release_built[0]
    table = dataset.index(str(out))
    first = sorted(metas)[0]
    box = _box_of(metas, first)
    starts = sorted({m["acquisition"]["collect_start"] for m in metas.values()})
    t0 = datetime.fromisoformat(starts[0].replace("Z", "+00:00"))
    t1 = datetime.fromisoformat(starts[1].replace("Z", "+00:00"))
    cases = {
        "bbox": (
            (pc.field("bbox", "xmin") <= box[2])
            & (pc.field("bbox", "xmax") >= box[0])
            & (pc.field("bbox", "ymin") <= box[3])
            & (pc.field("bbox", "ymax") >= box[1]),
            f"bbox.xmin <= {box[2]} AND bbox.xmax >= {box[0]} AND bbox.ymin <= {box[3]} "
            f"AND bbox.ymax >= {box[1]}",
            lambda m: _intersects(m, box),
        ),
        "time": (
            (pc.field("collect_start") >= t0) & (pc.field("collect_start") < t1),
            f"collect_start >= TIMESTAMPTZ '{t0.isoformat()}' AND "
            f"collect_start < TIMESTAMPTZ '{t1.isoformat()}'",
            lambda m: starts[0] <= m["acquisition"]["collect_start"] < starts[1],
        ),
        "polarization": (
            pc.field("polarization") == "V:V",
            "polarization = 'V:V'",
            lambda m: m["acquisition"]["polarization"] == "V:V",
        ),
        "none": (pc.field("polarization") == "H:H", "polarization = 'H:H'", lambda m: False),
    }
    path = dataset.release_root(str(out)) + "/index.parquet"
    for name, (expr, sql, scan) in cases.items():
        want = sorted(k for k, m in metas.items() if scan(m))
        got = sorted(table.filter(expr).column("key").to_pylist())
        query = f"SELECT key FROM read_parquet('{path}') WHERE {sql} ORDER BY key"
        assert got == want, name
        assert [r[0] for r in duckdb.sql(query).fetchall()] == want, name
        assert 0 < len(want) < len(metas) or name in ("polarization", "none"), (name, want)
    assert t0 < t1 and t0.utcoffset() == UTC.utcoffset(None)


def test_geopandas_reads_the_index_as_it_is(release_built, metas):
    """GeoPandas reads index.parquet as a GeoDataFrame in lon/lat: each geometry is the
    sample's footprint, and a spatial selection equals shapely over every meta.json."""
    import geopandas
    from shapely.geometry import box, shape

    out = release_built[0]
    gdf = geopandas.read_parquet(dataset.release_root(str(out)) + "/index.parquet")
    assert gdf.crs is not None and gdf.crs.to_string() == "OGC:CRS84"  # lon, lat (GeoParquet)
    assert len(gdf) == len(metas)
    for key, geom in zip(gdf["key"], gdf.geometry, strict=True):
        assert geom.equals_exact(shape(metas[key]["footprint"]), 0)
    area = box(*_box_of(metas, sorted(metas)[0], margin=0))
    want = sorted(k for k, m in metas.items() if shape(m["footprint"]).intersects(area))
    assert sorted(gdf[gdf.intersects(area)]["key"]) == want and 0 < len(want) < len(metas)


def test_open_where_reads_only_the_matching_samples_bytes(release_built, metas, s3, s3_server):
    """On moto's S3: a filtered read fetches the index and, of the shards, only the matching
    samples' bytes (one range request each); the samples equal a full read's."""
    import pyarrow.compute as pc
    import s3fs

    out = release_built[0]
    fs = s3fs.S3FileSystem(**s3)
    fs.put(str(out), "sarlo/rel", recursive=True)
    url = "s3://sarlo/rel"
    table = dataset.index(str(out))
    split = "train"
    train = table.filter(pc.field("split") == split)
    first = sorted(train.column("key").to_pylist())[0]
    where = pc.field("key") == first
    s3_server.sent.clear()
    got = list(dataset.open(url, split, storage_options=s3, where=where))
    assert [s["__key__"] for s in got] == [first]
    full = next(s for s in dataset.open(str(out), split) if s["__key__"] == first)
    assert np.array_equal(got[0]["sar.npy"], full["sar.npy"])
    assert got[0]["meta.json"] == full["meta.json"] and got[0]["sicd.xml"] == full["sicd.xml"]
    (row,) = train.filter(where).to_pylist()
    span = max(m["offset"] + m["size"] for m in row["members"]) - min(
        m["offset"] for m in row["members"]
    )
    shards = sorted(set(train.column("shard").to_pylist()))
    gen = json.loads((out / "manifest.json").read_text())["generation"]
    read = {s: s3_server.traffic(f"/sarlo/rel/{gen}/{s}") for s in shards}
    assert read[row["shard"]] == (1, span), read[row["shard"]]  # one request, its bytes only
    assert all(n == 0 for s, (n, _) in read.items() if s != row["shard"])
    all_bytes = sum((out / gen / s).stat().st_size for s in shards)
    print(f"filtered read of 1 of {train.num_rows} train samples: {span} of {all_bytes} bytes")
    # a byte of that sample flipped in the shard: the range read names it, as a stream would
    npy = next(m for m in row["members"] if m["name"] == "sar.npy")
    key = f"sarlo/rel/{gen}/{row['shard']}"
    data = bytearray(fs.cat_file(key))
    data[npy["offset"] + npy["size"] // 2] ^= 0x01
    fs.pipe_file(key, bytes(data))
    with pytest.raises(dataset.ShardError, match=f"member {first}.sar.npy is not the one"):
        list(dataset.open(url, split, storage_options=s3, where=where))
    again = list(dataset.open(url, split, storage_options=s3, where=where, verify=False))
    assert not np.array_equal(again[0]["sar.npy"], full["sar.npy"])  # the damage was real
