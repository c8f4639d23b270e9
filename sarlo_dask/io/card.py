"""A release's dataset card: the `card` sample writer (README.md in the release).

A Hugging Face dataset card: a YAML header (licence, task categories, tags, size, one
config whose splits point at the shards, and the members' features, so that
`datasets.load_dataset(FOLDER, split=..., streaming=True)` reads every sample) and the text
a reader needs: what a sample holds, the counts per split, the settings digests, how to read
it, licences and the citations. Made of the release alone (its index rows and manifest).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from sarlo_dask._version import __version__
from sarlo_dask.dataset import SPLITS, hf_dtype
from sarlo_dask.io.writers import ReleaseView, SampleWriter

CARD = "README.md"
SARLO80 = (
    "SARLO-80: a SAR-optical-text dataset of Umbra spotlight SICD scenes in native "
    "slant-range geometry at 0.8 m (ONERA, 2026)"
)
MEMBERS = {
    "sar.npy": "the complex tile (complex64, azimuth x slant range, 0.8 m)",
    "sar.png": "its amplitude preview",
    "sar.jpg": "its amplitude preview",
    "sicd.xml": "the tile's own SICD (its grid, corners and geometry)",
    "meta.json": "geometry, acquisition, optical, captions, label, provenance "
    "(JSON Schema: sarlo_dask/schemas/meta.schema.json)",
    "optic.png": "the optical image warped into the tile's pixel grid",
    "landcover.png": "the land-cover class code at each pixel (8 bits, the raster's codes)",
}


def size_category(n: int) -> str:
    """Hugging Face's size category of `n` samples."""
    for top, name in ((1e3, "n<1K"), (1e4, "1K<n<10K"), (1e5, "10K<n<100K"), (1e6, "100K<n<1M")):
        if n < top:
            return name
    return "1M<n<10M"


def card_header(
    rows: Sequence[Mapping[str, Any]], splits: Sequence[str], licence: str | None = None
) -> dict[str, Any]:
    """The card's YAML header: the config reads each split's shards with their features;
    `licence` the release's SPDX id (None: 'other', the inputs' own)."""
    names = sorted({str(m["name"]) for r in rows for m in r["members"]})
    features = [{"name": n, "dtype": hf_dtype(n)} for n in names]
    features += [{"name": "__key__", "dtype": "string"}, {"name": "__url__", "dtype": "string"}]
    terms = (
        {"license": "other", "license_link": licence}
        if licence and "://" in licence
        else {"license": licence.lower()}
        if licence
        else {"license": "other", "license_name": "the-inputs-licences"}
    )
    return {
        **terms,
        "pretty_name": "SAR samples in native slant-range geometry (sarlo-dask)",
        "task_categories": ["image-to-text", "zero-shot-image-classification"],
        "tags": ["sar", "synthetic-aperture-radar", "remote-sensing", "sicd", "webdataset"],
        "size_categories": [size_category(len(rows))],
        "configs": [
            {
                "config_name": "default",
                "data_files": [{"split": s, "path": f"{s}/**/*.tar"} for s in splits],
            }
        ],
        "dataset_info": {"features": features},
    }


FIGURE = "figures/samples.png"
FIGURE_ABOUT = (
    "Samples of each split, by key: the amplitude preview above, the optical view below "
    "where the release ships one"
)
PANEL = 192
"""pixels a side of one image in the figure"""


def sample_figure(release: ReleaseView, per_split: int = 2) -> bytes | None:
    """A PNG of the first `per_split` samples of each split (by key): each sample's preview,
    and below it its optical view when shipped; None when the writer is shown no pixels."""
    import io

    import numpy as np
    from PIL import Image

    if release.read is None or not release.rows:
        return None
    read = release.read
    chosen = [
        r
        for split in SPLITS
        for r in sorted((r for r in release.rows if r["split"] == split), key=lambda r: r["key"])[
            :per_split
        ]
    ]
    has = [{str(m["name"]) for m in r["members"]} for r in chosen]
    rows = 2 if any("optic.png" in h for h in has) else 1
    canvas = np.full((rows * (PANEL + 8) + 8, len(chosen) * (PANEL + 8) + 8, 3), 255, np.uint8)
    for i, (r, names) in enumerate(zip(chosen, has, strict=True)):
        preview = next(n for n in ("sar.png", "sar.jpg") if n in names)
        for j, name in enumerate((preview, "optic.png")[:rows]):
            if name not in names:
                continue  # no optical view shipped: the panel stays empty
            image = Image.open(io.BytesIO(read(str(r["key"]), name))).convert("RGB")
            factor = max(1, min(image.size) // (2 * PANEL))  # box-reduced first: faster
            small = image.reduce(factor).resize((PANEL, PANEL), Image.Resampling.LANCZOS)
            y, x = 8 + j * (PANEL + 8), 8 + i * (PANEL + 8)
            canvas[y : y + PANEL, x : x + PANEL] = np.asarray(small)
    buf = io.BytesIO()
    Image.fromarray(canvas).save(buf, format="PNG", optimize=False, compress_level=1)
    return buf.getvalue()


def dataset_card(release: ReleaseView, figures: Sequence[str] = ()) -> str:
    """The card's text: its YAML header and what a reader needs to use and cite it
    (`figures`: the figure files written beside it)."""
    rows, manifest = release.rows, release.manifest
    counts: dict[str, int] = {}
    passes: dict[str, set[str]] = {}
    for r in rows:
        counts[r["split"]] = counts.get(r["split"], 0) + 1
        passes.setdefault(r["split"], set()).add(str(r["pass_id"]))
    splits = [s for s in SPLITS if s in counts]
    terms = manifest.get("terms") or {}
    header = card_header(rows, splits, terms.get("licence"))
    header = yaml.safe_dump(header, sort_keys=False, allow_unicode=True)
    names = sorted({str(m["name"]) for r in rows for m in r["members"]})
    lines = [
        "---",
        header.rstrip(),
        "---",
        "",
        f"# {manifest.get('dataset', 'sarlo-dask release')}",
        "",
        f"{len(rows)} samples of complex SAR in native slant-range geometry, each a tile of "
        f"a SICD scene resampled to 0.8 m, with its preview, its own SICD and its metadata, "
        f"built by sarlo-dask {__version__} with the recipe of {SARLO80}. The samples are "
        "WebDataset shards; whole satellite passes go to one split.",
        "",
        "## Splits",
        "",
        "| split | samples | passes |",
        "|---|---|---|",
        *(f"| {s} | {counts[s]} | {len(passes[s])} |" for s in splits),
        "",
        "## A sample",
        "",
        *(
            [f"![{FIGURE_ABOUT}]({FIGURE})", "", f"{FIGURE_ABOUT}.", ""]
            if FIGURE in figures
            else []
        ),
        *(f"- `KEY.{n}`: {MEMBERS.get(n, 'a file of a sample writer')}" for n in names),
        "",
        "## Reading it",
        "",
        "```python",
        "from datasets import load_dataset",
        'ds = load_dataset("THIS_FOLDER", split="train", streaming=True)',
        "```",
        "",
        "Streaming only: Arrow has no complex type, so `sar.npy` arrives as the complex64 "
        "array when examples are not written to Arrow. `sarlo_dask.dataset.open(FOLDER, "
        "split)` streams it too, checking every shard against the manifest; `index.parquet` "
        "holds one row per sample (GeoParquet) for selection.",
        "",
        "## Provenance",
        "",
        f"- plan digest `{manifest.get('plan', '')}`, release settings digest "
        f"`{manifest.get('release_config', '')}`, sarlo-dask {__version__}",
        "- each sample's `meta.json` records its input scene, the settings digests of every "
        "stage that shaped it and the software version",
        "",
        "## Licences",
        "",
        *(
            [f"The release is licensed {terms['licence']}, as its builder stated.", ""]
            if terms.get("licence")
            else []
        ),
        *(
            [
                f"The optical source's licence: {terms['optical_licence']}"
                + (
                    f"; attribution: {terms['optical_attribution']}"
                    if terms.get("optical_attribution")
                    else ""
                )
                + " (each `meta.json`'s `optical.licence`).",
                "",
            ]
            if terms.get("optical_licence")
            else []
        ),
        "The licences of the SAR inputs apply to the samples made from them (each "
        "`meta.json` names its input; Umbra's open data, for one, is CC BY 4.0). Optical "
        "pixels are shipped only when the build was asked to (`optic.png`); each "
        "`meta.json` names the optical source and zoom, so that they can be rebuilt under "
        "that source's own terms.",
        "",
        "## Citation",
        "",
        f"- {SARLO80}.",
        "- The optical source named in each sample's `meta.json` (`optical.source`), as its "
        "terms ask.",
        "",
    ]
    return "\n".join(lines)


class CardWriter(SampleWriter):
    """README.md: the release's Hugging Face dataset card."""

    kind = "card"

    def files(self, release: ReleaseView) -> dict[str, bytes]:
        figure = sample_figure(release)
        out = {FIGURE: figure} if figure is not None else {}
        return {CARD: dataset_card(release, list(out)).encode(), **out}
