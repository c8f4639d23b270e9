"""Optical pairing against a real tile server on 127.0.0.1: alignment, faults, reconstruction."""

from __future__ import annotations

import json

import mercantile
import numpy as np
import pytest
from sarpy.geometry.point_projection import ground_to_image

from sarlo_dask.config import StandardizeConfig
from sarlo_dask.optical import HTTPTiles, PairConfig, pair_tile, reconstruct_optical
from sarlo_dask.optical.tilemath import global_pixel, tiles_for_bbox
from sarlo_dask.optical.warp import fit_affine, rgba, warp_bilinear
from sarlo_dask.pipeline import standardize_scenes
from sarlo_dask.sicd import sicd_from_xml
from sarlo_dask.standardize import open_scene_store
from sarlo_dask.tiles import tile_windows

from .helpers import peak
from .tileserver import TileServer

ZOOM = 18
SIZE, STRIDE = 256, 128


@pytest.fixture(scope="module")
def scene(scenes, client, tmp_path_factory):
    work = str(tmp_path_factory.mktemp("optwork"))
    cfg = StandardizeConfig(min_size=64, chunk_azimuth=256, chunk_range=256, store_chunk=128)
    res = standardize_scenes([str(scenes["fine"])], work, cfg, client)[0]
    truth = json.loads(open(str(scenes["fine"]) + ".truth.json").read())
    return open_scene_store(res.store).load(), truth


@pytest.fixture
def server(scene):
    _, truth = scene
    srv = TileServer([(t["llh"][0], t["llh"][1]) for t in truth["targets"]])
    yield srv
    srv.close()


def _source(server, tmp_path, **kw):
    opts = {"timeout": 0.5, "retries": 2, "backoff": 0.01, "max_workers": 4}
    opts.update(kw)
    return HTTPTiles(server.url, zoom=ZOOM, cache_dir=str(tmp_path / "cache"), **opts)


def test_tile_math_matches_mercantile():
    lon, lat = 2.2075, 48.7128
    x, y = global_pixel(np.array(lon), np.array(lat), ZOOM)
    t = mercantile.tile(lon, lat, ZOOM)
    assert (int(x // 256), int(y // 256)) == (t.x, t.y)
    b = mercantile.bounds(t)
    x0, y0 = global_pixel(np.array(b.west), np.array(b.north), ZOOM)
    assert np.allclose([x0, y0], [t.x * 256, t.y * 256], atol=1e-6)
    assert tiles_for_bbox(b.west + 1e-9, b.south + 1e-9, b.east - 1e-9, b.north - 1e-9, ZOOM) == (
        t.x,
        t.y,
        t.x,
        t.y,
    )


def test_warp_equals_scipy_map_coordinates_where_valid():
    from scipy import ndimage

    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    a = np.array([[0.31, 1.7, 20.25], [1.1, -0.2, 80.5]])
    out, ok = warp_bilinear(rgba(img, np.ones((300, 400), bool)), a, 128)
    ai, ri = np.mgrid[0:128, 0:128].astype(float)
    coords = [a[1, 0] * ai + a[1, 1] * ri + a[1, 2], a[0, 0] * ai + a[0, 1] * ri + a[0, 2]]
    ref = np.stack(
        [ndimage.map_coordinates(img[..., c].astype(float), coords, order=1) for c in range(3)], -1
    )
    assert ok.mean() > 0.5
    err = np.abs(out[ok].astype(float) - ref[ok])
    # fixed-point weights (1/256) and two roundings: within 2 grey levels, mostly exact
    assert err.max() < 2 and err.mean() < 0.5


def test_warp_is_a_bilinear_gather_that_never_invents_pixels():
    img = np.arange(6 * 8 * 3, dtype=np.uint8).reshape(6, 8, 3)
    valid = np.ones((6, 8), bool)
    valid[0, 0] = False
    a = fit_affine(np.array([[0, 0], [0, 1], [1, 0]]), np.array([[1, 1], [2, 1], [1, 2]]))
    out, ok = warp_bilinear(rgba(img, valid), a, 8)
    assert np.array_equal(out[0, :5], img[1, 1:6])  # integer shift: exact copy
    assert not ok[:, 6:].any() and not out[:, 6:].any()  # outside the image: 0, invalid
    out2, ok2 = warp_bilinear(
        rgba(img, valid),
        fit_affine(
            np.array([[0, 0], [0, 1], [1, 0]]), np.array([[0.5, 0.5], [1.5, 0.5], [0.5, 1.5]])
        ),
        2,
    )
    assert not ok2[0, 0] and out2[0, 0].sum() == 0  # touches the invalid pixel


def test_markers_land_within_one_sar_pixel_of_their_targets(scene, server, tmp_path):
    ds, truth = scene
    sicd = sicd_from_xml(ds.attrs["sicd_xml"])
    slc = ds.slc.values
    source = _source(server, tmp_path)
    checked = 0
    for w in tile_windows("fine", ds.sizes["azimuth"], ds.sizes["range"], SIZE, STRIDE):
        image, meta = pair_tile(w, ds, source, PairConfig(zoom=ZOOM))
        assert meta["status"] == "ok", meta["status"]
        assert meta["residual_px"] < 0.5
        red = (image[..., 0] > 200) & (image[..., 1] < 60)
        for t in truth["targets"]:
            (row, col), _, _ = ground_to_image(np.array(t["ecf"]), sicd, tolerance=1e-6)
            la, lr = col - w.a0, row - w.r0
            if not (12 <= la < SIZE - 12 and 12 <= lr < SIZE - 12):
                continue
            pa, pr = peak(slc, col, row)
            box = red[int(la) - 8 : int(la) + 9, int(lr) - 8 : int(lr) + 9]
            ia, ir = np.nonzero(box)
            assert len(ia) > 3, "marker visible in the warped optical tile"
            ca, cr = ia.mean() + int(la) - 8 + w.a0, ir.mean() + int(lr) - 8 + w.r0
            assert np.hypot(ca - pa, cr - pr) <= 1.0, (t, ca - pa, cr - pr)
            checked += 1
    assert checked >= 5


@pytest.mark.parametrize("mode", ["500", "timeout", "drop", "garbage"])
def test_server_faults_retry_then_say_why_and_a_later_run_fills_in(scene, server, tmp_path, mode):
    ds, _ = scene
    w = tile_windows("fine", ds.sizes["azimuth"], ds.sizes["range"], SIZE, STRIDE)[0]
    good, _ = pair_tile(w, ds, _source(server, tmp_path / "clean"), PairConfig(zoom=ZOOM))
    server.faults["all"] = (mode, 10_000)
    image, meta = pair_tile(w, ds, _source(server, tmp_path), PairConfig(zoom=ZOOM))
    assert meta["status"].startswith("failed:") and meta["retry"]
    expect = {"500": "HTTP 500", "timeout": "Timeout", "drop": "Error", "garbage": "not an image"}[
        mode
    ]
    assert expect in meta["status"]
    assert not image.any(), "no optical pixel is made up when every tile failed"
    server.faults.clear()
    again, meta2 = pair_tile(w, ds, _source(server, tmp_path), PairConfig(zoom=ZOOM))
    assert meta2["status"] == "ok" and np.array_equal(again, good)


def test_transient_faults_are_absorbed_by_retries(scene, server, tmp_path):
    ds, _ = scene
    w = tile_windows("fine", ds.sizes["azimuth"], ds.sizes["range"], SIZE, STRIDE)[0]
    server.faults["all"] = ("500", 3)  # three failures spread over the tiles, then fine
    _, meta = pair_tile(w, ds, _source(server, tmp_path), PairConfig(zoom=ZOOM))
    assert meta["status"] == "ok"


def test_404_tiles_are_empty_not_invented(scene, server, tmp_path):
    ds, _ = scene
    w = tile_windows("fine", ds.sizes["azimuth"], ds.sizes["range"], SIZE, STRIDE)[0]
    server.faults["all"] = ("404", 10_000)
    image, meta = pair_tile(w, ds, _source(server, tmp_path), PairConfig(zoom=ZOOM))
    assert meta["status"].startswith("failed: valid optical fraction 0.000")
    assert not meta["retry"] and not image.any()


def test_cache_serves_neighbouring_tiles(scene, server, tmp_path):
    ds, _ = scene
    ws = tile_windows("fine", ds.sizes["azimuth"], ds.sizes["range"], SIZE, STRIDE)
    source = _source(server, tmp_path)
    pair_tile(ws[0], ds, source, PairConfig(zoom=ZOOM))
    first = server.requests
    _, meta = pair_tile(ws[1], ds, source, PairConfig(zoom=ZOOM))  # overlaps ws[0] by half
    assert server.requests - first < meta["tiles"]


def test_reconstruction_is_pixel_identical(scene, server, tmp_path):
    ds, _ = scene
    w = tile_windows("fine", ds.sizes["azimuth"], ds.sizes["range"], SIZE, STRIDE)[3]
    for grid in (0, 5):
        image, optical = pair_tile(w, ds, _source(server, tmp_path), PairConfig(ZOOM, grid))
        meta = {"Nb_pixel_a": SIZE, "optical": optical}
        fresh = _source(server, tmp_path / f"fresh{grid}")  # nothing cached
        assert np.array_equal(reconstruct_optical(json.loads(json.dumps(meta)), fresh), image)


def test_tiles_touching_a_rotated_footprint_against_brute_force():
    """Every tile holding a point of the polygon is kept, none without one is."""
    from sarlo_dask.optical.tilemath import TILE_PX, tiles_touching

    rng = np.random.default_rng(5)
    for _ in range(20):
        centre = rng.uniform(2000, 3000, 2)
        angle = rng.uniform(0, np.pi)
        half = rng.uniform(100, 900, 2)
        rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        poly = centre + np.array([[-1, -1], [-1, 1], [1, 1], [1, -1]]) * half @ rot.T
        x0, y0 = (poly.min(0) // TILE_PX).astype(int)
        x1, y1 = (poly.max(0) // TILE_PX).astype(int)
        got = set(tiles_touching(poly, x0, y0, x1, y1))
        # brute force: dense points inside the polygon (convex combination sampling)
        u, v = np.meshgrid(np.linspace(-1, 1, 400), np.linspace(-1, 1, 400))
        pts = centre + np.column_stack([u.ravel(), v.ravel()]) * half @ rot.T
        hit = {(int(x), int(y)) for x, y in (pts // TILE_PX)}
        assert hit <= got
        assert len(got) <= (x1 - x0 + 1) * (y1 - y0 + 1)
        # a kept tile is one the polygon reaches (within a pixel of a sampled point)
        for x, y in got - hit:
            near = (pts[:, 0] > x * TILE_PX - 8) & (pts[:, 0] < (x + 1) * TILE_PX + 8)
            near &= (pts[:, 1] > y * TILE_PX - 8) & (pts[:, 1] < (y + 1) * TILE_PX + 8)
            assert near.any(), (x, y)
