"""Pictures of a release, for a person to look at: a few samples (the SAR preview and the
optical view, with the simulator's targets circled) and the label chart.

PNGs without a timestamp (the same release gives the same bytes), written beside the
release (`beside`), never into it: a release stays exactly what its build wrote.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sarlo_dask.dataset import SPLITS, release_root
from sarlo_dask.store import filesystem, write_bytes

PANEL_IN = 4.0
"""each panel's edge, inches (100 dpi): a figure of n samples is 800 x 400 n px"""
DPI = 100


def beside(url: str) -> str:
    """The folder holding `url` (a release's parent): where its figures go by default. A
    local path's as written (symbolic links kept: beside the folder the user named)."""
    if "://" not in url:
        return os.path.dirname(os.path.abspath(url))
    protocol, rest = url.split("://", 1)
    rest = rest.rstrip("/")
    if "/" not in rest:
        raise ValueError(f"{url}: a bucket's root has no folder beside it: choose one with --out")
    return f"{protocol}://{rest.rsplit('/', 1)[0]}"


def labels_png(stats: Mapping[str, Any]) -> bytes:
    """The label chart of a release's stats (captions.stats.plot_labels) as PNG bytes; the
    splits in dataset_stats's order (stats.json read back has "all" first)."""
    from sarlo_dask.captions.stats import plot_labels

    labels = stats["labels"]
    order = sorted(s for s in labels if s != "all") + ["all"] * ("all" in labels)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "labels.png")
        plot_labels({**stats, "labels": {s: labels[s] for s in order}}, path)
        return Path(path).read_bytes()


def truth_targets(meta: Mapping[str, Any], catalogue: str = "") -> list[tuple[float, float]]:
    """(lat, lon) of the simulated targets of a sample's scene, from the `*.truth.json` the
    simulator wrote beside its NITF (`source_url`, relative to the `catalogue` folder the
    build's inputs were in); none for a scene without one."""
    source = str(meta.get("source_url") or "")
    truth = Path(catalogue, source + ".truth.json")
    if not source or "://" in source or not truth.is_file():
        return []
    return [(t["llh"][0], t["llh"][1]) for t in json.loads(truth.read_text())["targets"]]


def target_pixels(meta: Mapping[str, Any], latlon: list[tuple[float, float]]) -> np.ndarray:
    """(azimuth, range) tile pixels of ground points, inside the tile only: the inverse of the
    affine the optical view was warped with (Web Mercator, from the fit points; the tile's
    corners when it has none), so a circle sits where the optical view shows the point."""
    from sarlo_dask.geometry.tiles import tile_corners
    from sarlo_dask.optical.tilemath import global_pixel
    from sarlo_dask.optical.warp import apply_affine, fit_affine

    size = int(meta["Nb_pixel_a"])
    points = meta.get("optical", {}).get("fit_points")
    if points:
        pts = np.asarray(points, dtype="float64")
        sar, ll = pts[:, :2], pts[:, 2:4]
    else:
        sar, ll = tile_corners(size), np.asarray(meta["corners_llh"], dtype="float64")[:, :2]
    if not latlon:
        return np.zeros((0, 2))
    ground = np.column_stack(global_pixel(ll[:, 1], ll[:, 0], 20))
    back = fit_affine(ground, sar)  # ground -> tile pixel
    t = np.asarray(latlon, dtype="float64")
    px = apply_affine(back, np.column_stack(global_pixel(t[:, 1], t[:, 0], 20)))
    inside = np.all((px >= 0) & (px <= size - 1), axis=1)
    return px[inside]


def pick_samples(
    release: str, n: int, storage_options: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Up to n samples (undecoded members, meta.json parsed, `split` added): the first of each
    split in turn, then the second of each, ...: every non-empty split is shown."""
    from sarlo_dask import dataset

    def samples(split: str) -> Iterator[dict[str, Any]]:
        if not dataset.shard_urls(release, split, storage_options):
            return
        for s in dataset.open(release, split, storage_options=storage_options, decode=False):
            yield {**s, "meta.json": json.loads(s["meta.json"]), "split": split}

    streams = [samples(s) for s in SPLITS]
    out: list[dict[str, Any]] = []
    while streams and len(out) < n:
        for stream in list(streams):
            item = next(stream, None)
            if item is None:
                streams.remove(stream)
            elif len(out) < n:
                out.append(item)
    return out


def _image(data: bytes | None) -> np.ndarray | None:
    from PIL import Image

    return None if data is None else np.asarray(Image.open(io.BytesIO(data)))


def samples_png(samples: list[dict[str, Any]], catalogue: str = "") -> tuple[bytes, int]:
    """One row per sample: its SAR preview and its optical view, the targets circled (see
    `target_pixels`; the simulator's truth files are found in `catalogue`); (PNG bytes,
    targets circled)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = max(1, len(samples))
    fig, axes = plt.subplots(
        rows, 2, figsize=(2 * PANEL_IN, rows * PANEL_IN), dpi=DPI, squeeze=False
    )
    circled = 0
    for (ax_sar, ax_opt), s in zip(axes, samples, strict=False):
        meta = s["meta.json"]
        fmt = meta["preview"]["format"]
        px = target_pixels(meta, truth_targets(meta, catalogue))
        circled += len(px)
        ax_sar.imshow(_image(s.get(f"sar.{fmt}")), cmap="gray", vmin=0, vmax=255)
        ax_sar.set_title(f"{meta['key']} ({s['split']})\nSAR, {meta['preview']['scale']}")
        optic = _image(s.get("optic.png"))
        if optic is not None:
            ax_opt.imshow(optic)
            ax_opt.set_title(f"optical view, {len(px)} targets circled")
        else:
            ax_opt.text(0.5, 0.5, "no optical view in the release", ha="center", va="center")
            ax_opt.set_title(f"optical: {meta['optical']['status']}")
        for ax, colour in ((ax_sar, "yellow"), (ax_opt, "cyan")):
            if len(px) and (ax is ax_sar or optic is not None):
                ax.scatter(
                    px[:, 1], px[:, 0], s=260, facecolors="none", edgecolors=colour, linewidths=2
                )
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel("range", fontsize=8)
            ax.set_ylabel("azimuth", fontsize=8)
    for ax in axes[len(samples) :].ravel():
        ax.axis("off")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue(), circled


@dataclass(frozen=True)
class Figures:
    """What `write_figures` wrote: the two PNGs' URLs and which samples it drew."""

    samples: str
    labels: str
    summary: str


def write_figures(
    release: str,
    folder: str | None = None,
    n: int = 4,
    storage_options: dict[str, Any] | None = None,
    catalogue: str = "",
) -> Figures:
    """samples.png (n samples over the splits) and labels.png (from the release's
    stats.json) in `folder` (default: beside the release); `catalogue`: the folder of the
    build's inputs, where simulated scenes' truth files lie (their targets are circled)."""
    folder = (folder or beside(release)).rstrip("/")
    fs, path = filesystem(f"{release_root(release, storage_options)}/stats.json", storage_options)
    with fs.open(path, "rb") as f:
        stats = json.loads(f.read())
    picked = pick_samples(release, n, storage_options)
    data, circled = samples_png(picked, catalogue)
    done = Figures(
        f"{folder}/samples.png",
        f"{folder}/labels.png",
        f"{len(picked)} samples: "
        + ", ".join(f"{s['meta.json']['key']} ({s['split']})" for s in picked)
        + f"; {circled} targets circled",
    )
    write_bytes(done.samples, data, storage_options)
    write_bytes(done.labels, labels_png(stats), storage_options)
    return done
