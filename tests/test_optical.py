"""Optical pairing against a real tile server on 127.0.0.1: alignment, faults, reconstruction."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import mercantile
import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from sarpy.geometry.point_projection import ground_to_image

from sarlo_dask.config import StandardizeConfig
from sarlo_dask.geometry.sicd import sicd_from_xml
from sarlo_dask.geometry.tiles import encode_image, tile_windows
from sarlo_dask.optical import (
    FolderTiles,
    GeoTIFFSource,
    HTTPTiles,
    PairConfig,
    pair_tile,
    reconstruct_optical,
    source_from_spec,
)
from sarlo_dask.optical.mesh import MESH_GRIDS, grid_points, mesh_apply, mesh_from_points
from sarlo_dask.optical.pair import pair_metadata
from sarlo_dask.optical.tilemath import global_pixel, tiles_for_bbox
from sarlo_dask.optical.warp import apply_affine, fit_affine, rgba, warp_bilinear
from sarlo_dask.pipeline import standardize_scenes
from sarlo_dask.stages.standardize import open_scene_store

from .helpers import free_port, peak
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


def _brute_force_mesh(sar, optical, size):
    """(column, row) of every tile pixel under the piecewise-affine map, pixel by pixel: the
    triangle holding the pixel (barycentric weights >= 0), its vertices' optical points
    weighted alike. Independent of the mesh module's cell and fraction arithmetic."""
    n = int(np.sqrt(len(sar)))
    v, q = sar.reshape(n, n, 2), optical.reshape(n, n, 2)
    g = (size - 1) / (n - 1)
    out = np.empty((size, size, 2))
    for a in range(size):
        for r in range(size):
            i, j = min(int(a // g), n - 2), min(int(r // g), n - 2)
            for tri in (((i, j), (i + 1, j), (i, j + 1)), ((i + 1, j + 1), (i, j + 1), (i + 1, j))):
                verts = np.array([v[t] for t in tri])
                lam = np.linalg.solve(np.vstack([verts.T, np.ones(3)]), [a, r, 1.0])
                if lam.min() >= -1e-9:
                    out[a, r] = lam @ np.array([q[t] for t in tri])
                    break
            else:
                raise AssertionError((a, r))
    return out


def test_mesh_warp_equals_brute_force_piecewise_affine_and_scipy_where_valid():
    from scipy import ndimage

    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    size, n = 96, 5
    sar = grid_points(size, n)
    a = np.array([[0.31, 1.7, 20.25], [1.1, -0.2, 80.5]])
    optical = apply_affine(a, sar) + rng.normal(0, 3, sar.shape)  # bent: no affine fits
    out, ok = warp_bilinear(
        rgba(img, np.ones((300, 400), bool)), mesh_from_points(sar, optical, size), size
    )
    coords = _brute_force_mesh(sar, optical, size)
    ref = np.stack(
        [
            ndimage.map_coordinates(
                img[..., c].astype(float), [coords[..., 1], coords[..., 0]], order=1
            )
            for c in range(3)
        ],
        -1,
    )
    assert ok.mean() > 0.5
    err = np.abs(out[ok].astype(float) - ref[ok])
    assert err.max() < 2 and err.mean() < 0.5
    # the control points are exact, and the map is continuous across every triangle edge
    at = mesh_apply(mesh_from_points(sar, optical, size), sar)
    assert np.allclose(at, optical, atol=1e-9)
    pixels = np.mgrid[0:size, 0:size].reshape(2, -1).T.astype(float)
    dense = mesh_apply(mesh_from_points(sar, optical, size), pixels).reshape(size, size, 2)
    assert np.allclose(dense, coords, atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(
    n=st.sampled_from(MESH_GRIDS),
    size=st.integers(40, 160),
    lin=st.lists(st.floats(-1.5, 1.5, allow_subnormal=False), min_size=4, max_size=4),
    shift=st.lists(st.floats(0, 120, allow_subnormal=False), min_size=2, max_size=2),
)
def test_a_mesh_of_an_affine_mapping_warps_as_the_affine(n, size, lin, shift):
    """Property: control points placed by an affine make a mesh whose warp is the affine's,
    pixel for pixel, validity included."""
    a = np.array([[lin[0], lin[1], 150 + shift[0]], [lin[2], lin[3], 150 + shift[1]]])
    rng = np.random.default_rng(size)
    img = rng.integers(0, 256, (500, 520, 3), dtype=np.uint8)
    valid = rng.random((500, 520)) > 0.01
    sar = grid_points(size, n)
    mesh = mesh_from_points(sar, apply_affine(a, sar), size)
    out_a, ok_a = warp_bilinear(rgba(img, valid), a, size)
    out_m, ok_m = warp_bilinear(rgba(img, valid), mesh, size)
    assert np.array_equal(ok_a, ok_m) and np.array_equal(out_a, out_m)


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


def _bent(ds, w, shift_px=10.0, sigma_px=40.0):
    """`ds`'s geolocation on tie points every 8 px, with a Gaussian bump of `shift_px` SAR px
    (0.8 m each) northward in the middle of window `w`: what relief does to the mapping."""
    from sarlo_dask.geometry.tiles import tile_llh

    n_az, n_rg = ds.sizes["azimuth"], ds.sizes["range"]
    tp_az = np.unique(np.append(np.arange(0, n_az, 8), n_az - 1)).astype("float64")
    tp_rg = np.unique(np.append(np.arange(0, n_rg, 8), n_rg - 1)).astype("float64")
    a, r = np.meshgrid(tp_az, tp_rg, indexing="ij")
    llh = tile_llh(ds.lat, ds.lon, ds.hae, a.ravel(), r.ravel()).reshape(*a.shape, 3)
    ac, rc = w.a0 + w.size / 2, w.r0 + w.size / 2
    bump = shift_px * np.exp(-((a - ac) ** 2 + (r - rc) ** 2) / (2 * sigma_px**2))
    llh[..., 0] += bump * 0.8 / 111_320.0
    dims = ("tp_azimuth", "tp_range")
    return xr.Dataset(
        {k: (dims, llh[..., i]) for i, k in enumerate(("lat", "lon", "hae"))},
        coords={"tp_azimuth": tp_az, "tp_range": tp_rg},
    )


def test_a_bent_geolocation_is_warped_by_a_mesh_and_reconstructed(scene, server, tmp_path):
    """Tie points bent by a bump: no affine fits (residual over 0.5 px), the coarsest mesh
    that does is chosen and recorded; reconstruction, from a fetching build's meta.json and
    from a metadata-only one's, is the build's image pixel for pixel. The flat scene's tile
    keeps one affine."""
    ds, _ = scene
    w = tile_windows("fine", ds.sizes["azimuth"], ds.sizes["range"], SIZE, STRIDE)[3]
    _, flat = pair_tile(w, ds, _source(server, tmp_path / "flat"), PairConfig(ZOOM))
    assert flat["warp"]["model"] == "affine" and flat["warp"]["grid"] is None
    assert flat["warp"]["residual_px"] <= 0.5 and len(flat["fit_points"]) == 4

    bent = _bent(ds, w)
    image, optical = pair_tile(w, bent, _source(server, tmp_path / "build"), PairConfig(ZOOM))
    warp = optical["warp"]
    assert optical["status"] == "ok", optical["status"]
    assert warp["model"] == "mesh" and warp["grid"] in MESH_GRIDS[1:], warp
    assert warp["affine_residual_px"] > 0.5 >= warp["residual_px"], warp
    assert optical["residual_px"] <= 0.5 and optical["valid_fraction"] == 1.0
    assert len(optical["fit_points"]) == warp["grid"] ** 2
    # the recorded residual holds at every 4th pixel too, not only at the check points
    pts = np.asarray(optical["fit_points"])
    mesh = mesh_from_points(
        pts[:, :2], np.column_stack(global_pixel(pts[:, 3], pts[:, 2], ZOOM)), SIZE
    )
    dense = np.mgrid[0:SIZE:4, 0:SIZE:4].reshape(2, -1).T.astype(float)
    from sarlo_dask.geometry.tiles import tile_llh
    from sarlo_dask.optical.mesh import mesh_residual_sar_px

    ll = tile_llh(bent.lat, bent.lon, bent.hae, dense[:, 0] + w.a0, dense[:, 1] + w.r0)
    truth = np.column_stack(global_pixel(ll[:, 1], ll[:, 0], ZOOM))
    assert mesh_residual_sar_px(mesh, dense, truth) <= 0.6

    meta = json.loads(json.dumps({"Nb_pixel_a": SIZE, "optical": optical}))
    assert np.array_equal(reconstruct_optical(meta, _source(server, tmp_path / "fresh")), image)
    only = pair_metadata(w, bent, _source(server, tmp_path / "m"), PairConfig(ZOOM))
    assert only["warp"] == warp and only["fit_points"] == optical["fit_points"]
    meta = json.loads(json.dumps({"Nb_pixel_a": SIZE, "optical": only}))
    assert np.array_equal(reconstruct_optical(meta, _source(server, tmp_path / "fresh2")), image)
    # a cap below what the bump needs: the finest allowed mesh (better than the affine), and
    # the status judges its residual as it would an affine's
    coarse = PairConfig(ZOOM, max_mesh_grid=3)
    if warp["grid"] > 3:
        image3, capped = pair_tile(w, bent, _source(server, tmp_path / "build"), coarse)
        assert capped["warp"]["grid"] == 3 and capped["warp"]["residual_px"] > 0.5
        assert capped["warp"]["residual_px"] < capped["warp"]["affine_residual_px"]
        failed = capped["status"].startswith("failed: mesh residual")
        assert failed == (capped["residual_px"] > coarse.max_residual_px), capped["status"]
        assert (
            pair_metadata(w, bent, _source(server, tmp_path / "m"), coarse)["status"]
            == capped["status"]
        )


def test_an_older_meta_json_without_warp_is_the_affine(scene, server, tmp_path):
    ds, _ = scene
    w = tile_windows("fine", ds.sizes["azimuth"], ds.sizes["range"], SIZE, STRIDE)[3]
    image, optical = pair_tile(w, ds, _source(server, tmp_path), PairConfig(ZOOM))
    del optical["warp"]
    meta = json.loads(json.dumps({"Nb_pixel_a": SIZE, "optical": optical}))
    assert np.array_equal(reconstruct_optical(meta, _source(server, tmp_path / "fresh")), image)


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


# `sarlo optical reconstruct` as a user runs it: the build's image pixel for pixel, or a
# one-line reason, exit 4 (source gave nothing / not the build's tiles) or 2 (usage), no file.


def _rebuild(*args, cwd=None):
    """`sarlo optical reconstruct ARGS` in a fresh process, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "sarlo_dask.cli", "optical", "reconstruct", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


def _write_sample(folder, image, optical):
    """A sample as the build leaves it: KEY.meta.json, and KEY.optic.png when status is ok."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    meta = Path(folder, "t.meta.json")
    meta.write_text(json.dumps({"Nb_pixel_a": SIZE, "optical": optical}))
    png = Path(folder, "t.optic.png")
    if optical["status"] == "ok":
        png.write_bytes(encode_image(image, "png"))
    return meta, png


def _centre_tile(optical, folder):
    """The tile file under the middle of the sample's footprint (the warp surely needs it)."""
    pts = np.asarray(optical["fit_points"])
    t = mercantile.tile(pts[:, 3].mean(), pts[:, 2].mean(), ZOOM)
    return Path(folder, str(ZOOM), str(t.x), f"{t.y}.png")


def _png(path):
    with Image.open(path) as im:
        return np.asarray(im)


def _refused(res, code, *words):
    """Exit `code`, one 'error: ' line naming `words`, no traceback."""
    err = res.stderr.strip()
    assert res.returncode == code, (res.returncode, res.stdout, err)
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    for w in words:
        assert w in err, (w, err)


@pytest.fixture(scope="module")
def folder_sample(scene, tmp_path_factory):
    """A sample paired against a folder of XYZ tiles named `optical`: (build dir, meta, png)."""
    from sarlo_dask.sim.optical import simulate_optical_tiles

    ds, truth = scene
    root = tmp_path_factory.mktemp("folder_sample")
    simulate_optical_tiles(root / "optical", truth, zoom=ZOOM, margin_deg=0.004)
    w = tile_windows("fine", ds.sizes["azimuth"], ds.sizes["range"], SIZE, STRIDE)[3]
    image, optical = pair_tile(w, ds, FolderTiles(str(root / "optical"), ZOOM), PairConfig(ZOOM))
    assert optical["status"] == "ok" and optical["source"] == f"folder:{root / 'optical'}"
    meta, png = _write_sample(root / "sample", image, optical)
    return root, meta, png


def test_every_described_source_is_accepted_back(tmp_path, monkeypatch):
    folder = tmp_path / "optical"
    folder.mkdir()
    monkeypatch.chdir(tmp_path.parent)  # meta.json keeps absolute paths: they resolve anywhere
    template = "https://tiles.example.org/{z}/{x}/{y}.png"
    for src in (
        HTTPTiles(template, zoom=ZOOM),
        HTTPTiles("https://user:secret@tiles.example.org/{z}/{x}/{y}.png", zoom=ZOOM),
        FolderTiles(str(folder), zoom=ZOOM),
        GeoTIFFSource(str(tmp_path / "ground.tif")),
    ):
        back = source_from_spec(src.describe(), ZOOM)
        assert type(back) is type(src) and back.describe() == src.describe()
    assert source_from_spec(f"folder:{folder}", ZOOM).root == str(folder)
    keyed = HTTPTiles(template + "?key=secret", zoom=ZOOM).describe()
    assert "secret" not in keyed
    with pytest.raises(ValueError, match="redacted") as err:
        source_from_spec(keyed, ZOOM)
    assert "secret" not in str(err.value)
    with pytest.raises(ValueError, match="no folder"):
        source_from_spec("folder:elsewhere", ZOOM)


def test_reconstruct_cli_with_the_source_meta_json_records(folder_sample, tmp_path):
    """`--source folder:PATH`, exactly as meta.json says, and no --source at all, from the
    build's folder and from another: the build's optic.png pixel for pixel. With the
    optical folder moved, the recorded path finds nothing (a usage error saying so) and
    `--optical` names the new place."""
    root, meta, png = folder_sample
    recorded = json.loads(meta.read_text())["optical"]["source"]
    out = tmp_path / "given.png"
    res = _rebuild(str(meta), "--source", recorded, "--out", str(out), cwd=root)
    assert res.returncode == 0, res.stderr
    assert np.array_equal(_png(out), _png(png))
    res = _rebuild(str(meta), "--out", str(tmp_path / "d.png"), cwd=root)
    assert res.returncode == 0, res.stderr
    assert np.array_equal(_png(tmp_path / "d.png"), _png(png))
    res = _rebuild(str(meta), "--out", str(tmp_path / "e.png"), cwd=tmp_path)  # elsewhere
    assert res.returncode == 0, res.stderr
    assert np.array_equal(_png(tmp_path / "e.png"), _png(png))
    moved = tmp_path / "moved"
    shutil.copytree(root / "optical", moved)
    shutil.move(root / "optical", root / "optical-away")
    try:
        res = _rebuild(str(meta), "--out", str(tmp_path / "x.png"), cwd=tmp_path)
        _refused(res, 2, recorded, "as meta.json records it")
        assert not (tmp_path / "x.png").exists()
        res = _rebuild(str(meta), "--optical", str(moved), "--out", str(tmp_path / "m.png"))
        assert res.returncode == 0, res.stderr
        assert np.array_equal(_png(tmp_path / "m.png"), _png(png))
    finally:
        shutil.move(root / "optical-away", root / "optical")


def test_reconstruct_cli_with_an_http_source_by_default(scene, server, tmp_path):
    ds, _ = scene
    w = tile_windows("fine", ds.sizes["azimuth"], ds.sizes["range"], SIZE, STRIDE)[3]
    image, optical = pair_tile(w, ds, _source(server, tmp_path / "build"), PairConfig(ZOOM))
    meta, png = _write_sample(tmp_path / "sample", image, optical)
    res = _rebuild(str(meta), "--tile-cache", str(tmp_path / "c"))
    assert res.returncode == 0, res.stderr
    assert np.array_equal(_png(tmp_path / "sample" / "t.optic.rebuilt.png"), _png(png))


@pytest.mark.parametrize("mode", ["empty folder", "refused", "500", "404", "timeout"])
def test_reconstruct_cli_from_a_source_that_gives_nothing_fails_fast(
    folder_sample, server, tmp_path, mode
):
    """No tile from the source: exit 4 in seconds, the source and the failure on one line,
    no PNG anywhere (neither --out nor beside the sample)."""
    _, meta, _ = folder_sample
    sample = tmp_path / "sample"
    shutil.copytree(meta.parent, sample)
    before = set(sample.iterdir())
    if mode == "empty folder":
        (tmp_path / "empty").mkdir()
        spec, words = f"folder:{tmp_path / 'empty'}", ["has none of the"]
    elif mode == "refused":
        port = free_port()  # a port nobody listens on
        spec, words = f"http://127.0.0.1:{port}/{{z}}/{{x}}/{{y}}.png", ["ConnectionError"]
    else:
        server.faults["all"] = (mode, 10**9)
        spec = server.url
        words = {"500": ["HTTP 500"], "404": ["has none of the"], "timeout": ["Timeout"]}[mode]
    extra = ["--timeout", "0.5"] if mode == "timeout" else []
    start = time.monotonic()
    res = _rebuild(
        str(sample / "t.meta.json"),
        "--source",
        spec,
        "--tile-cache",
        str(tmp_path / "cache"),
        *extra,
    )
    elapsed = time.monotonic() - start
    _refused(res, 4, spec.removeprefix("folder:"), *words)
    assert elapsed < 15, elapsed
    assert set(sample.iterdir()) == before


def test_reconstruct_cli_with_a_tile_missing_fails_unless_the_build_missed_it(
    folder_sample, scene, tmp_path
):
    """Partial coverage: a source lacking a tile the build had is refused (exit 4, no file);
    a sample the build made with that tile missing (status ok under a lower
    min_optical_fraction) is rebuilt as the build made it, and refused from the full folder."""
    root, meta, _ = folder_sample
    lacking = tmp_path / "lacking" / "optical"
    shutil.copytree(root / "optical", lacking)
    optical = json.loads(meta.read_text())["optical"]
    _centre_tile(optical, lacking).unlink()
    out = tmp_path / "out.png"
    res = _rebuild(str(meta), "--source", str(lacking), "--out", str(out))
    _refused(res, 4, f"folder:{lacking}", f"lacks 1 of the {optical['tiles']}", "lacked 0")
    assert not out.exists()

    ds, _ = scene
    w = tile_windows("fine", ds.sizes["azimuth"], ds.sizes["range"], SIZE, STRIDE)[3]
    cfg = PairConfig(ZOOM, min_valid_fraction=0.0)
    image, partial = pair_tile(w, ds, FolderTiles(str(lacking), ZOOM), cfg)
    assert partial["status"] == "ok" and partial["tiles_empty"] == 1
    assert partial["valid_fraction"] < 0.95 and not image.all()
    pmeta, ppng = _write_sample(tmp_path / "partial", image, partial)
    res = _rebuild(str(pmeta), "--out", str(out), cwd=lacking.parent)
    assert res.returncode == 0, res.stderr
    assert np.array_equal(_png(out), _png(ppng))
    out.unlink()
    res = _rebuild(str(pmeta), "--source", str(root / "optical"), "--out", str(out))
    _refused(res, 4, "lacks 0 of the", "lacked 1")
    assert not out.exists()


def test_reconstruct_cli_usage_errors_and_samples_without_an_image(folder_sample, tmp_path):
    """Exit 2: no meta.json, not a meta.json, a source spec it cannot read, a source of the
    wrong kind, a redacted key. Exit 4: the build made no optical image for the sample."""
    root, meta, _ = folder_sample
    out = tmp_path / "o.png"
    not_meta = tmp_path / "n.meta.json"
    not_meta.write_text("{}")
    cases = [
        ([str(tmp_path / "none.meta.json")], ["no such file"]),
        ([str(not_meta)], ["not a sample's meta.json"]),
        ([str(meta), "--source", "ftp://x/{z}/{x}/{y}"], ["not an http(s) XYZ template"]),
        ([str(meta), "--source", "geotiff:ground.tif"], ["the build used XYZ tiles"]),
        ([str(meta), "--source", "http://127.0.0.1:9/{z}/{x}/{y}.png?k=***"], ["redacted"]),
    ]
    for args, words in cases:
        _refused(_rebuild(*args, "--out", str(out), cwd=root), 2, *words)
    optical = json.loads(meta.read_text())["optical"]
    for status in ("failed: valid optical fraction 0.000 < 0.95", "no optical source"):
        failed, _ = _write_sample(tmp_path / status[:6], None, {**optical, "status": status})
        res = _rebuild(str(failed), "--out", str(out), cwd=root)
        _refused(res, 4, "no optical image", status)
    assert not out.exists()
