"""Land cover per sample: a synthetic raster whose class is known at every ground point,
through the tile stage and the release, judged by sarpy's projection of each released chip's
own SICD and by rasterio's own sampling."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

CODES = (10, 20, 30, 40, 50, 60, 80)
CELL_DEG = 0.0004
"""a class cell: about 44 m x 29 m at the simulator's latitude (tiles hold several)"""


def checker_raster(path: Path, lat: float, lon: float, half_deg: float = 0.02) -> dict:
    """A GeoTIFF (EPSG:4326, uint8, nodata 0) of CELL_DEG pixels around (lat, lon), each
    pixel's code from its row and column (so every ground point's class is known), with a
    nodata strip; its transform."""
    import rasterio
    from rasterio.transform import from_origin

    n = int(2 * half_deg / CELL_DEG)
    rows, cols = np.mgrid[0:n, 0:n]
    codes = np.asarray(CODES, np.uint8)[(rows * 3 + cols) % len(CODES)]
    codes[:, n // 2 : n // 2 + 2] = 0  # a strip without a class: nodata
    transform = from_origin(lon - half_deg, lat + half_deg, CELL_DEG, CELL_DEG)
    profile = {"driver": "GTiff", "height": n, "width": n, "count": 1, "dtype": "uint8"}
    with rasterio.open(path, "w", crs="EPSG:4326", transform=transform, nodata=0, **profile) as f:
        f.write(codes, 1)
    return {"transform": transform, "codes": codes}


def test_landcover_sampling_is_rasterios_in_any_crs(tmp_path):
    """The codes at random points, from a raster in UTM (the points reprojected): rasterio's
    `sample` at the same points gives the same codes; outside the raster, the nodata code."""
    import rasterio
    from pyproj import Transformer
    from rasterio.transform import from_origin

    from sarlo_dask.geometry.landcover import open_landcover, sample_codes

    rng = np.random.default_rng(2)
    codes = rng.choice(np.asarray(CODES, np.uint8), (300, 400))
    path = tmp_path / "utm.tif"
    profile = {"driver": "GTiff", "height": 300, "width": 400, "count": 1, "dtype": "uint8"}
    transform = from_origin(430000, 5400000, 10, 10)
    with rasterio.open(path, "w", crs="EPSG:32631", transform=transform, nodata=0, **profile) as f:
        f.write(codes, 1)
    to_ll = Transformer.from_crs("EPSG:32631", "EPSG:4326", always_xy=True)
    x, y = rng.uniform(429000, 435000, 5000), rng.uniform(5396000, 5401000, 5000)
    lon, lat = to_ll.transform(x, y)
    src = open_landcover(str(path))
    got = sample_codes(src, lat, lon)
    with rasterio.open(path) as f:
        ref = np.array([v[0] for v in f.sample(zip(x, y, strict=True))])
    inside = (x > 430000) & (x < 434000) & (y < 5400000) & (y > 5397000)
    assert inside.sum() > 1000 and (~inside).sum() > 1000
    assert (got[inside] == ref[inside]).mean() > 0.999  # points on a pixel edge may go either way
    assert (got[~inside] == 0).all()


def test_a_raster_that_is_not_class_codes_is_refused(tmp_path):
    import rasterio
    from rasterio.transform import from_origin

    from sarlo_dask.geometry.landcover import LandCoverError, probe_landcover

    path = tmp_path / "heights.tif"
    profile = {"driver": "GTiff", "height": 4, "width": 4, "count": 1, "dtype": "float32"}
    with rasterio.open(
        path, "w", crs="EPSG:4326", transform=from_origin(0, 1, 0.1, 0.1), **profile
    ) as f:
        f.write(np.zeros((4, 4), np.float32), 1)
    with pytest.raises(LandCoverError, match=r"heights.tif: float32 pixels \(class codes"):
        probe_landcover(str(path))
    with pytest.raises(LandCoverError, match="not readable as a raster"):
        probe_landcover(str(tmp_path / "none.tif"))


def test_released_samples_carry_the_land_cover_of_their_ground(scenes, client, tmp_path):
    """A scene tiled with tiles.landcover and released: every sample ships landcover.png,
    whose code at sampled pixels is the raster's at the ground point sarpy projects that pixel
    of the released chip SICD to (>= 99 %: a pixel whose ground lies within the projection's
    centimetres of a class edge may go either way); meta.json's fractions are the PNG's
    histogram, the index's are meta.json's, and the nodata strip is counted as nodata."""
    import io

    import pyarrow.parquet as pq
    import webdataset as wds
    from PIL import Image

    from sarlo_dask.config import ReleaseConfig, StandardizeConfig, TileConfig
    from sarlo_dask.geometry.sicd import sicd_from_xml
    from sarlo_dask.pipeline import release_scenes, standardize_scenes, tile_scenes

    url = str(scenes["coarse"])
    truth = json.loads(Path(url + ".truth.json").read_text())
    spec = truth["spec"]
    raster = checker_raster(tmp_path / "landcover.tif", spec["lat"], spec["lon"])
    work, out = str(tmp_path / "work"), str(tmp_path / "out")
    scfg = StandardizeConfig(min_size=64, chunk_azimuth=256, chunk_range=256)
    assert standardize_scenes([url], work, scfg, client)[0].status == "done"
    tcfg = TileConfig(size=256, stride=256, landcover=str(tmp_path / "landcover.tif"))
    res = tile_scenes(work, tcfg, client)[0]
    assert res.status == "done" and res.kept > 0, res
    rel = release_scenes(work, out, ReleaseConfig(splits={"train": 1.0}), client, [res.scene_id])
    gen = Path(out) / rel.manifest["generation"]
    index = {r["key"]: r for r in pq.read_table(gen / "index.parquet").to_pylist()}
    inv = ~raster["transform"]
    seen, nodata = 0, 0.0
    for shard in sorted(gen.rglob("*.tar")):
        for sample in wds.WebDataset(str(shard), shardshuffle=False):
            meta = json.loads(sample["meta.json"])
            codes = np.asarray(Image.open(io.BytesIO(sample["landcover.png"])))
            assert codes.shape == (256, 256) and codes.dtype == np.uint8
            values, counts = np.unique(codes, return_counts=True)
            hist = {str(int(v)): c / codes.size for v, c in zip(values, counts, strict=True)}
            assert meta["landcover"]["fractions"] == pytest.approx(hist)
            row = index[meta["key"]]
            assert {str(x["code"]): x["fraction"] for x in row["landcover"]} == pytest.approx(hist)
            chip = sicd_from_xml(sample["sicd.xml"].decode())
            a, r = np.meshgrid(np.arange(2, 256, 9), np.arange(3, 256, 9), indexing="ij")
            llh = chip.project_image_to_ground_geo(np.column_stack([r.ravel(), a.ravel()]))
            col, rr = inv @ (llh[:, 1], llh[:, 0])
            expected = raster["codes"][np.floor(rr).astype(int), np.floor(col).astype(int)]
            assert (codes[a.ravel(), r.ravel()] == expected).mean() >= 0.99, meta["key"]
            nodata += meta["landcover"]["nodata_fraction"]
            seen += 1
    assert seen == rel.manifest["samples"] > 0
    assert nodata > 0  # the strip without a class lies under the scene, and is counted
