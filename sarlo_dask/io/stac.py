"""A release as a STAC catalogue: the `stac` sample writer (`release: {writers: [stac]}`).

`stac/collection.json` (the release: extent, summaries, one `item` link per sample),
`stac/items/KEY.json` (one Item per sample) and `stac/items.parquet` (the same Items as
stac-geoparquet, one row each: the table STAC tools and DuckDB query). An Item per sample,
not per scene: a sample is what users select and load, and each has its own footprint,
incidence angle, split and shard; an Item per scene would have to carry samples whose
footprints and splits differ as assets, which STAC searches cannot select.

Each Item fills the `sar` (mode, band, centre frequency, polarizations, product type,
resolution, spacing, looks, observation direction), `sat` (orbit state), `view` (incidence),
`processing` (level, lineage, software) and `ml-aoi` (split) extensions from the scene's
SICD, as meta.json holds them; its `shard` asset is the tar that holds the sample, with the
`file` extension's size and checksum (sha256 multihash) and, per member, its offset, size
and sha256 in the tar (`sarlo:members`), so a reader can fetch one member by range.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Mapping, Sequence
from typing import Any

from sarlo_dask._version import __version__
from sarlo_dask.io.index import wkb_polygon
from sarlo_dask.io.writers import ReleaseView, SampleWriter

STAC_VERSION = "1.1.0"
EXTENSIONS = {
    "sar": "https://stac-extensions.github.io/sar/v1.0.0/schema.json",
    "sat": "https://stac-extensions.github.io/sat/v1.0.0/schema.json",
    "view": "https://stac-extensions.github.io/view/v1.0.0/schema.json",
    "file": "https://stac-extensions.github.io/file/v2.1.0/schema.json",
    "processing": "https://stac-extensions.github.io/processing/v1.1.0/schema.json",
    "ml-aoi": "https://stac-extensions.github.io/ml-aoi/v0.1.0/schema.json",
}
BANDS = (  # IEEE radar bands, GHz: the sar extension's names
    ("P", 0.25, 1.0),
    ("L", 1.0, 2.0),
    ("S", 2.0, 4.0),
    ("C", 4.0, 8.0),
    ("X", 8.0, 12.0),
    ("Ku", 12.0, 18.0),
    ("K", 18.0, 27.0),
    ("Ka", 27.0, 40.0),
)
ML_AOI_SPLIT = {"train": "train", "validation": "validate", "test": "test"}
"""the release's split names as ml-aoi v0.1.0 spells them"""
LINEAGE = (
    "SICD complex scene, band-limited FFT resampling to {az:g} m (azimuth) x {rg:g} m (slant "
    "range) in its own slant-plane grid, cut into tiles (sarlo-dask, the SARLO-80 recipe)"
)


def frequency_band(hz: float | None) -> str | None:
    """The radar band name of a centre frequency (Hz), or None outside 0.25-40 GHz."""
    if hz is None:
        return None
    ghz = hz / 1e9
    return next((name for name, lo, hi in BANDS if lo <= ghz < hi), None)


def polarizations(pol: str | None) -> list[str]:
    """SICD's 'V:V' as the sar extension's ['VV'] (none when unknown)."""
    if not pol or ":" not in pol:
        return []
    tx, rx = pol.split(":", 1)
    return [f"{tx}{rx}"] if f"{tx}{rx}" in ("HH", "VV", "HV", "VH") else []


def _dumps(obj: Any, indent: int | None = 1) -> bytes:
    """JSON text of `obj`; `indent` None: compact, by the C encoder (an Item per sample)."""
    seps = (",", ":") if indent is None else None
    text = json.dumps(obj, indent=indent, separators=seps, sort_keys=True, ensure_ascii=False)
    return (text + "\n").encode()


def stac_item(row: Mapping[str, Any], marker: Mapping[str, Any], collection: str) -> dict:
    """The STAC Item of one released sample: `row` its index record (io.index), `marker`
    its shard's commit marker."""
    rings = wkb_polygon(row["geometry"])
    box = row["bbox"]
    props: dict[str, Any] = {
        "datetime": row["collect_start"],
        "platform": row["collector"],
        "sar:instrument_mode": row["mode"] or "UNKNOWN",
        "sar:frequency_band": frequency_band(row["centre_frequency_hz"]),
        "sar:center_frequency": row["centre_frequency_hz"] / 1e9,
        "sar:polarizations": polarizations(row["polarization"]),
        "sar:product_type": "SSC",
        "sar:resolution_range": row["resolution_range_m"],
        "sar:resolution_azimuth": row["resolution_azimuth_m"],
        "sar:pixel_spacing_range": row["spacing_range_m"],
        "sar:pixel_spacing_azimuth": row["spacing_azimuth_m"],
        "sar:looks_range": 1,
        "sar:looks_azimuth": 1,
        "sar:looks_equivalent_number": row.get("enl"),
        "sar:observation_direction": row["look_side"],
        "sat:orbit_state": row["orbit_direction"],
        "view:incidence_angle": row["incidence_deg"],
        "processing:level": "L1",
        "processing:lineage": LINEAGE.format(
            az=row["spacing_azimuth_m"], rg=row["spacing_range_m"]
        ),
        "processing:software": {"sarlo-dask": __version__},
        "ml-aoi:split": ML_AOI_SPLIT[row["split"]],
        "sarlo:split": row["split"],
        "sarlo:pass_id": row["pass_id"],
        "sarlo:scene_id": row["scene_id"],
        "sarlo:label": row["label"],
    }
    props = {k: v for k, v in props.items() if v is not None and v != []}
    shard = str(row["shard"])
    return {
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "stac_extensions": sorted(EXTENSIONS.values()),
        "id": row["key"],
        "collection": collection,
        "geometry": {"type": "Polygon", "coordinates": [[list(p) for p in r] for r in rings]},
        "bbox": [box["xmin"], box["ymin"], box["xmax"], box["ymax"]],
        "properties": props,
        "links": [
            {"rel": rel, "href": "../collection.json", "type": "application/json"}
            for rel in ("root", "parent", "collection")
        ],
        "assets": {
            "shard": {
                "href": posixpath.join("../..", shard),
                "type": "application/x-tar",
                "title": "the WebDataset shard holding the sample's members",
                "roles": ["data"],
                "file:size": int(marker["bytes"]),
                "file:checksum": "1220" + str(marker["sha256"]),
                "sarlo:members": [dict(m) for m in row["members"]],
            }
        },
    }


def stac_collection(
    items: Sequence[Mapping[str, Any]], manifest: Mapping[str, Any], collection: str
) -> dict:
    """The release's Collection: extent and summaries of `items`, a link to each."""
    boxes = [i["bbox"] for i in items]
    times = sorted(i["properties"]["datetime"] for i in items)

    def values(field: str) -> list[Any]:
        found: set[Any] = set()
        for i in items:
            v = i["properties"].get(field)
            found.update(v if isinstance(v, list) else [v] if v is not None else [])
        return sorted(found)

    return {
        "type": "Collection",
        "stac_version": STAC_VERSION,
        "stac_extensions": sorted(EXTENSIONS[k] for k in ("sar", "sat", "view")),
        "id": collection,
        "title": str(manifest.get("dataset", "sarlo-dask release")),
        "description": (
            f"{len(items)} SAR samples in native slant-range geometry (complex tiles, "
            "amplitude previews, SICD chips, captions), split by satellite pass into "
            f"{', '.join(sorted(manifest.get('splits', {})))}; built by sarlo-dask "
            f"{__version__} (plan {manifest.get('plan', '')})"
        ),
        "license": "other",
        "extent": {
            "spatial": {
                "bbox": [
                    [
                        min(b[0] for b in boxes),
                        min(b[1] for b in boxes),
                        max(b[2] for b in boxes),
                        max(b[3] for b in boxes),
                    ]
                ]
            },
            "temporal": {"interval": [[times[0], times[-1]]]},
        },
        "summaries": {
            "platform": values("platform"),
            "sar:instrument_mode": values("sar:instrument_mode"),
            "sar:frequency_band": values("sar:frequency_band"),
            "sar:polarizations": values("sar:polarizations"),
            "sar:product_type": values("sar:product_type"),
            "sat:orbit_state": values("sat:orbit_state"),
            "ml-aoi:split": values("ml-aoi:split"),
        },
        "links": [
            {"rel": "root", "href": "./collection.json", "type": "application/json"},
            *(
                {"rel": "item", "href": f"./items/{i['id']}.json", "type": "application/geo+json"}
                for i in items
            ),
        ],
    }


def stac_geoparquet(items: Sequence[Mapping[str, Any]]) -> bytes:
    """The Items as one stac-geoparquet table, in memory."""
    import io

    import pyarrow.parquet as pq
    from stac_geoparquet.arrow import parse_stac_items_to_arrow

    table = parse_stac_items_to_arrow([dict(i) for i in items]).read_all()
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


class StacWriter(SampleWriter):
    """The release's STAC Collection and Items, as JSON and as stac-geoparquet."""

    kind = "stac"

    def files(self, release: ReleaseView) -> dict[str, bytes]:
        collection = f"sarlo-{release.manifest.get('plan', 'release')}"
        rows = sorted(release.rows, key=lambda r: str(r["key"]))
        items = [stac_item(r, release.shards[r["shard"]], collection) for r in rows]
        out = {f"stac/items/{i['id']}.json": _dumps(i, None) for i in items}
        out["stac/collection.json"] = _dumps(stac_collection(items, release.manifest, collection))
        out["stac/items.parquet"] = stac_geoparquet(items)
        return out
