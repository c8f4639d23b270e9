"""{out}/index.parquet: one row per released sample, GeoParquet 1.1 (the footprint as WKB).

What users select samples by (split, pass, acquisition fields, quality, Major TOM grid cell,
group of samples of the same ground, label, captions, footprint and its bbox) beside where
each sample lies: its shard and every member's offset and size in the
tar. pandas, pyarrow, DuckDB and GeoPandas read it as it is; `dataset.open(url, split,
where=...)` reads only the shards that hold matches.
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Mapping, Sequence
from typing import Any

INDEX = "index.parquet"

_ACQUISITION = (
    "collector",
    "mode",
    "polarization",
    "look_side",
    "orbit_direction",
    "incidence_deg",
    "grazing_deg",
    "centre_frequency_hz",
)


def polygon_wkb(geojson: Mapping[str, Any]) -> bytes:
    """A GeoJSON Polygon as little-endian WKB."""
    rings = geojson["coordinates"]
    out = [struct.pack("<BII", 1, 3, len(rings))]
    for ring in rings:
        out.append(struct.pack("<I", len(ring)))
        out.extend(struct.pack("<dd", float(x), float(y)) for x, y in ring)
    return b"".join(out)


def wkb_polygon(data: bytes) -> list[list[tuple[float, float]]]:
    """The rings of a little-endian WKB Polygon (polygon_wkb's inverse)."""
    order, kind, n_rings = struct.unpack_from("<BII", data)
    assert order == 1 and kind == 3, (order, kind)
    pos, rings = 9, []
    for _ in range(n_rings):
        (n,) = struct.unpack_from("<I", data, pos)
        pos += 4
        rings.append([struct.unpack_from("<dd", data, pos + 16 * i) for i in range(n)])
        pos += 16 * n
    return rings


def landcover_list(landcover: Mapping[str, Any] | None) -> list[dict[str, Any]] | None:
    """meta.json's land-cover shares as the index's list of (code, fraction), by code."""
    if not landcover:
        return None
    shares = sorted((int(code), float(f)) for code, f in landcover["fractions"].items())
    return [{"code": code, "fraction": f} for code, f in shares]


def index_rows(
    rows: Sequence[Mapping[str, Any]],
    assignment: Mapping[str, str],
    members: Mapping[str, tuple[str, Mapping[str, Sequence[Any]]]],
) -> list[dict[str, Any]]:
    """One record per released sample: `rows` the release's index rows (with `acquisition`
    and `footprint` from meta.json), `members` each key's shard and {member: [offset, size,
    sha256]}."""
    out = []
    for r in rows:
        acq, ring = r["acquisition"], r["footprint"]["coordinates"][0]
        lons, lats = [p[0] for p in ring], [p[1] for p in ring]
        shard, offsets = members[r["key"]]
        caption = r["caption"] or {}
        quality = r.get("quality") or {}  # tiles of schema < 2.3 have none
        signals = r.get("caption_signals") or {}
        out.append(
            {
                "key": r["key"],
                "scene_id": r["scene_id"],
                "split": assignment[r["pass_id"]],
                "pass_id": r["pass_id"],
                "shard": shard,
                "members": [
                    {"name": n, "offset": int(o), "size": int(s), "sha256": str(d)}
                    for n, (o, s, d) in sorted(offsets.items())
                ],
                "collect_start": acq["collect_start"],
                **{k: acq[k] for k in _ACQUISITION},
                "resolution_range_m": acq["resolution_m"]["output"]["range"],
                "resolution_azimuth_m": acq["resolution_m"]["output"]["azimuth"],
                "spacing_range_m": acq["spacing_m"]["output"]["range"],
                "spacing_azimuth_m": acq["spacing_m"]["output"]["azimuth"],
                "enl": quality.get("enl"),
                "saturated_fraction": quality.get("saturated_fraction"),
                "phash": quality.get("phash"),
                "grid_cell": (r.get("grid") or {}).get("cell"),
                "optical_gap_days": r.get("optical_gap_days"),
                "caption_hedges": sum(v["hedges"] for v in signals.values())
                if signals and all("hedges" in v for v in signals.values())
                else None,
                "landcover": landcover_list(r.get("landcover")),
                "group": r.get("group"),
                "label": r["label"] if r["caption"] else None,
                "caption_short": caption.get("SHORT"),
                "caption_mid": caption.get("MID"),
                "caption_long": caption.get("LONG"),
                "bbox": {
                    "xmin": min(lons),
                    "ymin": min(lats),
                    "xmax": max(lons),
                    "ymax": max(lats),
                },
                "geometry": polygon_wkb(r["footprint"]),
            }
        )
    return out


def located_rows(
    rows: Sequence[Mapping[str, Any]],
    assignment: Mapping[str, str],
    markers: Mapping[str, Mapping[str, Any]],
) -> list[dict[str, Any]]:
    """index_rows of a release whose shards' commit markers are `markers` (by shard)."""
    members = {key: (shard, at) for shard, m in markers.items() for key, at in m["members"].items()}
    return index_rows(rows, assignment, members)


def index_parquet(records: Sequence[Mapping[str, Any]]) -> bytes:
    """The GeoParquet file of `records` (index_rows), in memory: the same records give the
    same bytes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    member = pa.struct(
        [
            ("name", pa.string()),
            ("offset", pa.int64()),
            ("size", pa.int64()),
            ("sha256", pa.string()),
        ]
    )
    bbox = pa.struct([(k, pa.float64()) for k in ("xmin", "ymin", "xmax", "ymax")])
    fields = [
        ("key", pa.string()),
        ("scene_id", pa.string()),
        ("split", pa.string()),
        ("pass_id", pa.string()),
        ("shard", pa.string()),
        ("members", pa.list_(member)),
        ("collect_start", pa.timestamp("us", tz="UTC")),
        ("collector", pa.string()),
        ("mode", pa.string()),
        ("polarization", pa.string()),
        ("look_side", pa.string()),
        ("orbit_direction", pa.string()),
        ("incidence_deg", pa.float64()),
        ("grazing_deg", pa.float64()),
        ("centre_frequency_hz", pa.float64()),
        ("resolution_range_m", pa.float64()),
        ("resolution_azimuth_m", pa.float64()),
        ("spacing_range_m", pa.float64()),
        ("spacing_azimuth_m", pa.float64()),
        ("enl", pa.float64()),
        ("saturated_fraction", pa.float64()),
        ("phash", pa.string()),
        ("grid_cell", pa.string()),
        ("optical_gap_days", pa.int32()),
        ("caption_hedges", pa.int32()),
        ("landcover", pa.list_(pa.struct([("code", pa.int32()), ("fraction", pa.float64())]))),
        ("group", pa.string()),
        ("label", pa.string()),
        ("caption_short", pa.string()),
        ("caption_mid", pa.string()),
        ("caption_long", pa.string()),
        ("bbox", bbox),
        ("geometry", pa.binary()),
    ]
    recs = [
        {**r, "collect_start": _timestamp(r["collect_start"])} for r in records
    ]  # pyarrow takes datetimes for timestamp columns
    table = pa.Table.from_pylist(recs, schema=pa.schema(fields))
    boxes = [r["bbox"] for r in records]
    geo = {
        "version": "1.1.0",
        "primary_column": "geometry",
        "columns": {
            "geometry": {
                "encoding": "WKB",
                "geometry_types": ["Polygon"],
                "bbox": [
                    min((b["xmin"] for b in boxes), default=0.0),
                    min((b["ymin"] for b in boxes), default=0.0),
                    max((b["xmax"] for b in boxes), default=0.0),
                    max((b["ymax"] for b in boxes), default=0.0),
                ],
                "covering": {"bbox": {k: ["bbox", k] for k in ("xmin", "ymin", "xmax", "ymax")}},
            }
        },
    }
    table = table.replace_schema_metadata({"geo": json.dumps(geo, sort_keys=True)})
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def _timestamp(text: str | None) -> Any:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None
