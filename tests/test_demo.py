"""`sarlo demo` shows the dataset as its users get it: three passes, one per split, several
tiles per scene, a picture of a few samples with the simulated targets circled, the label
chart; `sarlo stats` writes under the release (reports/)."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sarlo_dask import dataset
from sarlo_dask.cli.figures import DPI, PANEL_IN, beside, target_pixels, truth_targets


def _ok(demo) -> Path:
    out, run = demo
    assert run.returncode == 0, run.stdout + run.stderr
    return out


def _png(path: Path) -> Image.Image:
    image = Image.open(io.BytesIO(path.read_bytes()))
    assert image.format == "PNG"
    image.load()  # the whole file decodes
    return image


def test_every_split_gets_a_pass_and_every_scene_several_tiles(demo):
    out = _ok(demo)
    manifest = json.loads((out / "release" / "manifest.json").read_text())
    splits = manifest["splits"]
    assert set(splits) == {"train", "validation", "test"}
    for name, s in splits.items():
        assert s["samples"] > 0 and len(s["passes"]) == 1, (name, s)
    passes = [p for s in splits.values() for p in s["passes"]]
    assert len(set(passes)) == 3  # whole passes: no pass in two splits
    per_scene = Counter(m["scene_id"] for m in dataset.iter_meta(str(out / "release")))
    assert len(per_scene) == 3 and min(per_scene.values()) > 1, per_scene
    assert sum(per_scene.values()) == manifest["samples"]


def test_the_samples_picture_has_a_row_per_sample_over_every_split(demo):
    out = _ok(demo)
    line = next(x for x in demo[1].stdout.splitlines() if x.startswith("figures: "))
    # the README's command names the folder relatively: so does what it prints
    assert f"{out.name}/samples.png" in line and f"{out.name}/labels.png" in line
    assert (out / "samples.png").is_file() and (out / "labels.png").is_file()
    shown = [s for s in ("train", "validation", "test") if f"({s})" in line]
    assert shown == ["train", "validation", "test"], line
    n = int(line.split("(", 1)[1].split(" samples", 1)[0])
    image = _png(out / "samples.png")
    # n rows of two panels (SAR, optical), PANEL_IN inches at DPI each
    assert image.size == (2 * PANEL_IN * DPI, n * PANEL_IN * DPI)
    assert n >= 3
    rgb = np.asarray(image.convert("RGB")).astype(int)
    assert rgb.std() > 10  # images drawn, not a blank figure


def test_the_circles_sit_on_the_sar_targets_and_the_optical_red_disks(demo):
    """Where the picture circles a target, the SAR sample has its bright point and the
    optical view its red disk: the picture shows the simulator's truth, geolocated."""
    out = _ok(demo)
    checked = 0
    for split in ("train", "validation", "test"):
        for s in dataset.open(str(out / "release"), split):
            meta = s["meta.json"]
            latlon = truth_targets(meta, str(out / "inputs"))
            assert latlon, meta["source_url"]
            amp = np.abs(s["sar.npy"])
            optic = np.asarray(Image.open(io.BytesIO(s["optic.png"])).convert("RGB"))
            floor = np.median(amp)
            for a, r in np.round(target_pixels(meta, latlon)).astype(int):
                if min(a, r) < 3 or max(a, r) > amp.shape[0] - 4:
                    continue  # a target cut by the tile's edge
                near = (slice(a - 3, a + 4), slice(r - 3, r + 4))
                assert amp[near].max() > 30 * floor, (meta["key"], a, r)
                red = optic[near]
                assert ((red[..., 0] > 200) & (red[..., 1] < 60)).any(), (meta["key"], a, r)
                checked += 1
    assert checked >= 10


def test_the_label_chart_is_the_one_sarlo_stats_draws(demo, tmp_path):
    """The demo's labels.png and `sarlo stats RELEASE` (run elsewhere, no --out): the same
    chart, written under the release in reports/ (nothing in the current folder), which
    `sarlo verify` does not take for part of the release."""
    out = _ok(demo)
    _png(out / "labels.png")
    public = tmp_path / "public"
    shutil.copytree(out / "release", public / "rel")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    run = subprocess.run(
        [sys.executable, "-m", "sarlo_dask.cli", "stats", "../public/rel"],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert list(cwd.iterdir()) == []
    assert "wrote ../public/rel/reports/stats.json and ../public/rel/reports/labels.png" in (
        run.stdout
    )
    reports = public / "rel" / "reports"
    written = json.loads((reports / "stats.json").read_text())
    current = Path(dataset.release_root(str(out / "release")))
    released = json.loads((current / "stats.json").read_text())
    ground = released.pop("ground")  # the release's own, not redrawn by `sarlo stats`
    assert {"leakage", "duplicates", "groups", "grid"} <= set(ground)
    assert written == released
    manifest = json.loads((out / "release" / "manifest.json").read_text())
    assert sum(v["count"] for v in written["labels"]["all"].values()) == manifest["samples"]
    assert (reports / "labels.png").read_bytes() == (out / "labels.png").read_bytes()
    check = subprocess.run(
        [sys.executable, "-m", "sarlo_dask.cli", "verify", str(public / "rel")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert check.returncode == 0 and check.stdout.startswith("intact"), check.stdout


def test_the_figures_are_the_same_bytes_again(demo, tmp_path):
    from sarlo_dask.cli.figures import write_figures

    out = _ok(demo)
    done = write_figures(str(out / "release"), str(tmp_path), catalogue=str(out / "inputs"))
    assert Path(done.samples).read_bytes() == (out / "samples.png").read_bytes()
    assert Path(done.labels).read_bytes() == (out / "labels.png").read_bytes()


def test_beside_is_the_folder_holding_the_release(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert beside("rel") == beside("rel/") == str(tmp_path)
    assert beside("s3://bucket/a/rel/") == "s3://bucket/a"
    with pytest.raises(ValueError, match="--out"):
        beside("s3://bucket")


def _edges(image: np.ndarray) -> np.ndarray:
    """Edge strength of a picture smoothed over ~4 px (a SAR preview's speckle averages out)."""
    from scipy import ndimage

    g = ndimage.gaussian_filter(image.astype("float64"), 4)
    e = np.hypot(ndimage.sobel(g, 0), ndimage.sobel(g, 1))
    return (e - e.mean()) / e.std()


def test_the_sar_preview_and_the_optical_view_show_the_same_landscape(demo):
    """The demo's scenes and optical tiles are made from one landscape (fields, roads, a river,
    trees, buildings): in every sample the edges of the amplitude preview and of the optical
    view correlate, and far more than with another sample's optical view."""
    out = _ok(demo)
    pairs = []
    for split in ("train", "validation", "test"):
        for s in dataset.open(str(out / "release"), split, decode=False):
            sar = np.asarray(Image.open(io.BytesIO(s["sar.png"])).convert("L"))
            optic = np.asarray(Image.open(io.BytesIO(s["optic.png"])).convert("L"))
            pairs.append((_edges(sar), _edges(optic)))
    n = len(pairs)
    assert n == 12
    same = [float(np.mean(pairs[i][0] * pairs[i][1])) for i in range(n)]
    other = [float(np.mean(pairs[i][0] * pairs[(i + 1) % n][1])) for i in range(n)]
    assert min(same) > 0.25, same  # measured 0.33 to 0.51
    assert max(other) < 0.15, other  # measured -0.08 to 0.06
    assert "captions: none (no caption model). Add them with a model folder" in demo[1].stdout
