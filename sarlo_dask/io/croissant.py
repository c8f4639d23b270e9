"""A release described in Croissant 1.0: the `croissant` sample writer (`croissant.json`).

Croissant (MLCommons) is how ML tools find a dataset's files and records. The description
names every file with its sha256 (index.parquet and each shard, a `FileObject`), the shards
of each split as a `FileSet`, and one `RecordSet`, `samples`: a record per released sample,
read from index.parquet (its key, split, pass, scene, shard, acquisition fields, label and
captions), each record's files being the members of its shard that index.parquet locates
(`members`: name, offset, size, sha256). mlcroissant validates it and its loader yields the
release's samples (the tests).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sarlo_dask._version import __version__
from sarlo_dask.io.index import INDEX
from sarlo_dask.io.writers import ReleaseView, SampleWriter

CROISSANT = "croissant.json"
CONTEXT = {  # Croissant 1.0's JSON-LD context (the specification's vocabulary)
    "@language": "en",
    "@vocab": "https://schema.org/",
    "citeAs": "cr:citeAs",
    "column": "cr:column",
    "conformsTo": "dct:conformsTo",
    "cr": "http://mlcommons.org/croissant/",
    "rai": "http://mlcommons.org/croissant/RAI/",
    "data": {"@id": "cr:data", "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
    "dct": "http://purl.org/dc/terms/",
    "equivalentProperty": "cr:equivalentProperty",
    "examples": {"@id": "cr:examples", "@type": "@json"},
    "extract": "cr:extract",
    "field": "cr:field",
    "fileProperty": "cr:fileProperty",
    "fileObject": "cr:fileObject",
    "fileSet": "cr:fileSet",
    "format": "cr:format",
    "includes": "cr:includes",
    "isLiveDataset": "cr:isLiveDataset",
    "jsonPath": "cr:jsonPath",
    "key": "cr:key",
    "md5": "cr:md5",
    "parentField": "cr:parentField",
    "path": "cr:path",
    "recordSet": "cr:recordSet",
    "references": "cr:references",
    "regex": "cr:regex",
    "repeated": "cr:repeated",
    "replace": "cr:replace",
    "samplingRate": "cr:samplingRate",
    "sc": "https://schema.org/",
    "separator": "cr:separator",
    "source": "cr:source",
    "subField": "cr:subField",
    "transform": "cr:transform",
}
FIELDS = (  # index.parquet's columns a record holds, with their schema.org types
    ("key", "sc:Text", "the sample's key: its files are KEY.* in its shard"),
    ("split", "sc:Text", "train, validation or test (whole satellite passes per split)"),
    ("pass_id", "sc:Text", "the satellite pass (collector and collect start)"),
    ("scene_id", "sc:Text", "the input scene"),
    ("shard", "sc:Text", "the tar holding the sample's files, relative to this file"),
    ("collect_start", "sc:Date", "the SAR collection's start, UTC"),
    ("collector", "sc:Text", "SICD CollectionInfo.CollectorName"),
    ("mode", "sc:Text", "SICD RadarMode.ModeType"),
    ("polarization", "sc:Text", "SICD TxRcvPolarizationProc (e.g. V:V)"),
    ("look_side", "sc:Text", "left or right"),
    ("orbit_direction", "sc:Text", "ascending or descending"),
    ("incidence_deg", "sc:Float", "incidence on the ellipsoid at the tile's centre, degrees"),
    ("grazing_deg", "sc:Float", "90 - incidence, degrees"),
    ("centre_frequency_hz", "sc:Float", "the processed band's centre, Hz"),
    ("resolution_range_m", "sc:Float", "output slant-range resolution (ImpRespWid), m"),
    ("resolution_azimuth_m", "sc:Float", "output azimuth resolution (ImpRespWid), m"),
    ("spacing_range_m", "sc:Float", "output slant-range sample spacing, m"),
    ("spacing_azimuth_m", "sc:Float", "output azimuth sample spacing, m"),
    ("enl", "sc:Float", "equivalent number of looks: median of 32 px windows' mean^2/var"),
    ("saturated_fraction", "sc:Float", "share of valid pixels at the source's full scale"),
    ("phash", "sc:Text", "64-bit DCT hash of the preview (imagehash's phash), hex"),
    ("grid_cell", "sc:Text", "Major TOM 10 km grid cell of the tile's centre (e.g. 451U_946L)"),
    ("group", "sc:Text", "first scene_id/key of the samples of any pass showing this ground"),
    ("optical_gap_days", "sc:Integer", "days from the optical acquisition to the SAR collect"),
    ("caption_hedges", "sc:Integer", "hedge words the caption model wrote (removed claims)"),
    ("label", "sc:Text", "scene category from the MID caption (null without captions)"),
    ("caption_short", "sc:Text", "the SHORT caption"),
    ("caption_mid", "sc:Text", "the MID caption"),
    ("caption_long", "sc:Text", "the LONG caption"),
)
MEMBER_FIELDS = (
    ("name", "sc:Text", "the member's name after KEY. (sar.npy, sar.png, sicd.xml, meta.json)"),
    ("offset", "sc:Integer", "its first byte in the shard"),
    ("size", "sc:Integer", "its bytes"),
    ("sha256", "sc:Text", "its sha256"),
)


def _field(name: str, kind: str, about: str, column: str, parent: str = "samples") -> dict:
    return {
        "@type": "cr:Field",
        "@id": f"{parent}/{name}",
        "name": name,
        "description": about,
        "dataType": kind,
        "source": {"fileObject": {"@id": INDEX}, "extract": {"column": column}},
    }


def spdx_url(licence: str) -> str:
    """A licence as a URL: an SPDX id's page (a URL stays as it is)."""
    return licence if "://" in licence else f"https://spdx.org/licenses/{licence}.html"


def croissant(release: ReleaseView, index_sha256: str) -> dict[str, Any]:
    """The Croissant description of `release`, whose index.parquet has `index_sha256`."""
    manifest = release.manifest
    splits = sorted({str(r["split"]) for r in release.rows})
    shards: Mapping[str, Mapping[str, Any]] = release.shards
    files = [
        {
            "@type": "cr:FileObject",
            "@id": INDEX,
            "name": INDEX,
            "description": "one row per sample (GeoParquet): what records are read from",
            "contentUrl": INDEX,
            "encodingFormat": "application/x-parquet",
            "sha256": index_sha256,
        },
        *(
            {
                "@type": "cr:FileObject",
                "@id": path,
                "name": path,
                "description": f"a WebDataset shard of {shards[path].get('samples', 0)} samples",
                "contentUrl": path,
                "contentSize": f"{int(shards[path]['bytes'])} B",
                "encodingFormat": "application/x-tar",
                "sha256": str(shards[path]["sha256"]),
            }
            for path in sorted(shards)
        ),
        *(
            {
                "@type": "cr:FileSet",
                "@id": f"{split}-shards",
                "name": f"{split}-shards",
                "description": f"the {split} split's WebDataset shards",
                "encodingFormat": "application/x-tar",
                "includes": f"{split}/**/*.tar",
            }
            for split in splits
        ),
    ]
    fields = [_field(name, kind, about, name) for name, kind, about in FIELDS]
    members = _field("members", "sc:Text", "the sample's files in its shard", "members")
    members.pop("dataType")
    members["repeated"] = True
    members["subField"] = [
        _field(name, kind, about, "members", "samples/members")
        for name, kind, about in MEMBER_FIELDS
    ]
    for sub, (name, _, _) in zip(members["subField"], MEMBER_FIELDS, strict=True):
        sub["source"]["transform"] = {"jsonPath": name}
    terms = manifest.get("terms") or {}
    licence = {"license": spdx_url(terms["licence"])} if terms.get("licence") else {}
    return {
        **licence,
        "@context": CONTEXT,
        "@type": "sc:Dataset",
        "name": str(manifest.get("dataset", "sarlo-dask release")),
        "description": (
            f"{len(release.rows)} SAR samples in native slant-range geometry (complex tiles, "
            "amplitude previews, SICD chips, captions, metadata) as WebDataset shards split by "
            "satellite pass, built from SICD scenes with the SARLO-80 recipe"
        ),
        "conformsTo": "http://mlcommons.org/croissant/1.0",
        "citeAs": (
            "SARLO-80: a SAR-optical-text dataset (ONERA, 2026); built with sarlo-dask "
            f"{__version__}"
        ),
        "version": f"{__version__}+{manifest.get('plan', '')}",
        "distribution": files,
        "recordSet": [
            {
                "@type": "cr:RecordSet",
                "@id": "samples",
                "name": "samples",
                "description": "one record per released sample",
                "key": {"@id": "samples/key"},
                "field": [*fields, members],
            }
        ],
    }


class CroissantWriter(SampleWriter):
    """croissant.json: the release's files and sample records in Croissant 1.0."""

    kind = "croissant"

    def files(self, release: ReleaseView) -> dict[str, bytes]:
        index = release.manifest.get("index") or {}
        doc = croissant(release, str(index.get("sha256", "")))
        return {CROISSANT: (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()}
