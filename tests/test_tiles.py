"""The tile stage on a 2-process cluster: windows, members, geometry, validity, resume, GeoTIFF."""

from __future__ import annotations

import hashlib
import itertools
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sarlo_dask.config import TileConfig
from sarlo_dask.driver.integrity import store_digests
from sarlo_dask.geometry.tiles import (
    amplitude_preview,
    polygon_mask,
    tile_groups,
    tile_llh,
    tile_windows,
    valid_fraction,
    window_starts,
)
from sarlo_dask.optical import GeoTIFFSource, PairConfig, pair_tile
from sarlo_dask.pipeline import standardize_scenes, tile_scenes
from sarlo_dask.sim.optical import simulate_optical_tiles
from sarlo_dask.stages.standardize import open_scene_store
from sarlo_dask.store import Store, scene_marker_url, scene_store_url

from .helpers import small_scene_config

SCFG = small_scene_config()
ZOOM = 18


@pytest.fixture(scope="module")
def built(scenes, client, tmp_path_factory):
    """Two scenes standardized, their optical ground as a tile folder, tiled once."""
    root = tmp_path_factory.mktemp("tiles")
    work = str(root / "work")
    urls = [str(scenes["fine"]), str(scenes["coarse"])]
    assert all(r.status == "done" for r in standardize_scenes(urls, work, SCFG, client))
    for u in urls:
        simulate_optical_tiles(
            root / "optical",
            json.loads(Path(u + ".truth.json").read_text()),
            zoom=ZOOM,
            margin_deg=0.004,
        )
    cfg = TileConfig(size=256, stride=128, optical=str(root / "optical"), zoom=ZOOM)
    results = tile_scenes(work, cfg, client)
    return root, work, cfg, results


@given(n=st.integers(0, 5000), size=st.integers(16, 1100), stride=st.integers(1, 1100))
def test_window_starts_follow_the_formula(n, size, stride):
    starts = window_starts(n, size, stride)
    assert len(starts) == (0 if n < size else (n - size) // stride + 1)
    assert all(s + size <= n for s in starts) and starts == sorted(set(starts))


@given(n_az=st.integers(0, 9000), n_rg=st.integers(0, 9000), columns=st.integers(1, 9))
def test_tile_groups_partition_the_windows_into_neighbourhoods(n_az, n_rg, columns):
    windows = tile_windows("s", n_az, n_rg)
    groups = tile_groups(windows, band=2, columns=columns)
    flat = [w for g in groups for w in g]
    assert sorted(flat, key=lambda w: w.key) == sorted(windows, key=lambda w: w.key)
    for g in groups:
        assert 0 < len(g) <= 2 * columns
        assert len({w.ia // 2 for w in g}) == 1 and len({w.ir // columns for w in g}) == 1
        # down the band, then right: each window follows one it overlaps
        assert [(w.ir, w.ia) for w in g] == sorted((w.ir, w.ia) for w in g)
        assert all(abs(a.ia - b.ia) + abs(a.ir - b.ir) <= 2 for a, b in itertools.pairwise(g))
    assert groups == tile_groups(windows[::-1], band=2, columns=columns)  # order-free


def test_polygon_mask_against_brute_force():
    poly = np.array([[2, 1], [2, 9], [12, 14], [15, 3]], dtype=float)  # (row=range, col=az)
    mask = polygon_mask(poly, 0, 0, 16)

    def inside(a, r):  # winding by cross products for this convex, clockwise-or-not polygon
        signs = []
        for i in range(4):
            (r1, a1), (r2, a2) = poly[i], poly[(i + 1) % 4]
            signs.append(np.sign((r2 - r1) * (a - a1) - (a2 - a1) * (r - r1)))
        signs = [s for s in signs if s != 0]
        return all(s == signs[0] for s in signs)

    want = np.array([[inside(a, r) for r in range(16)] for a in range(16)])
    assert np.array_equal(mask, want)
    patch = np.ones((16, 16), np.complex64)
    patch[:, :4] = 0
    assert valid_fraction(patch, None) == 0.75


def test_preview_is_documented_log_amplitude_with_percentile_clipping():
    rng = np.random.default_rng(0)
    z = (rng.rayleigh(1, (64, 64)) * np.exp(1j * rng.uniform(0, 6, (64, 64)))).astype("c8")
    z[:8] = 0
    img = amplitude_preview(z)
    assert img.dtype == np.uint8 and not img[:8].any() and img[8:].min() >= 1
    db = 20 * np.log10(np.abs(z[8:]))
    lo, hi = np.percentile(db, [1, 99])
    expect = np.round(np.clip((db - lo) / (hi - lo), 0, 1) * 254 + 1)
    assert np.array_equal(img[8:], expect.astype(np.uint8))


def test_tiles_members_and_fields(built):
    root, work, cfg, results = built
    assert [r.status for r in results] == ["done", "done"]
    for r in results:
        ds = open_scene_store(scene_store_url(work, r.scene_id)).load()
        windows = tile_windows(r.scene_id, ds.sizes["azimuth"], ds.sizes["range"], 256, 128)
        assert r.kept + len(r.refused) == len(windows) > 0
        keys = [w.key for w in windows]
        assert len(set(keys)) == len(keys) and all("." not in k for k in keys)
        for w in windows:
            base = Path(work, "tiles", r.scene_id, w.key)
            meta = json.loads(Path(f"{base}.meta.json").read_text())
            sar = np.load(f"{base}.sar.npy")
            assert sar.dtype == np.dtype("<c8") and sar.shape == (256, 256)
            assert np.array_equal(sar, ds.slc.values[w.slices()])
            assert Path(f"{base}.sar.png").exists() and Path(f"{base}.optic.png").exists()
            for k in (
                "crop",
                "Nb_pixel_a",
                "Nb_pixel_r",
                "ss_row",
                "ss_col",
                "spacing_eff_az",
                "spacing_eff_rg",
                "scp_row",
                "scp_col",
                "bbox_ecf",
                "bbox_llh",
            ):
                assert k in meta, k
            angles = {"ellipsoid_deg", "sicd_deg", "terrain_deg", "terrain_deg_reason"}
            assert set(meta["incidence_angles"]) == angles
            assert meta["incidence_angles"]["terrain_deg"] is None
            assert abs(meta["incidence_angles"]["ellipsoid_deg"] - 35) < 1
            assert meta["optical"]["status"] == "ok" and meta["optical"]["zoom"] == ZOOM
            # every geolocated pixel of the tile lies in bbox_llh
            a, rr = np.meshgrid(
                np.arange(w.a0, w.a0 + 256), np.arange(w.r0, w.r0 + 256), indexing="ij"
            )
            llh = tile_llh(ds.lat, ds.lon, ds.hae, a.ravel(), rr.ravel())
            lo, hi = np.array(meta["bbox_llh"])
            assert np.all(llh >= lo - 1e-12) and np.all(llh <= hi + 1e-12)
            # and in the footprint: a closed, counter-clockwise GeoJSON ring (lon, lat)
            ring = np.array(meta["footprint"]["coordinates"][0])
            assert np.array_equal(ring[0], ring[-1]) and len(ring) >= 5
            edge, rel = np.diff(ring, axis=0), llh[:, None, 1::-1] - ring[None, :-1]
            cross = edge[None, :, 0] * rel[..., 1] - edge[None, :, 1] * rel[..., 0]
            assert cross.min() >= -1e-15, cross.min()  # left of (or on) every edge


def test_a_rerun_skips_and_a_lost_tile_comes_back_byte_identical(built, client):
    root, work, cfg, _ = built
    tiles = sorted(Path(work, "tiles").rglob("*.*"))
    before = {p: p.read_bytes() for p in tiles if p.is_file()}
    assert [r.status for r in tile_scenes(work, cfg, client)] == ["skipped", "skipped"]
    victim = next(p for p in before if p.name.endswith(".meta.json"))
    victim.unlink()
    Path(work, "tiles", "fine.done.json").unlink(missing_ok=True)
    Path(work, "tiles", "coarse.done.json").unlink(missing_ok=True)
    tile_scenes(work, cfg, client)
    after = {p: p.read_bytes() for p in tiles if p.is_file()}
    assert after == before


def test_invalid_tiles_are_refused_with_the_reason(built, client, tmp_path):
    root, work, cfg, _ = built
    ds = open_scene_store(scene_store_url(work, "coarse")).load()
    ds["slc"][:, :300] = 0  # a scene whose left part holds no data
    ds.attrs["scene_id"] = "blank"
    w2 = str(tmp_path / "work")
    ds.to_zarr(scene_store_url(w2, "blank"), zarr_format=3, consolidated=True)
    digests = store_digests(Store(w2), "blank")  # a marker records its store's digests
    Path(scene_marker_url(w2, "blank")).write_text(json.dumps({"digests": digests}))
    res = tile_scenes(w2, cfg.model_copy(update={"optical": None}), client)[0]
    assert res.refused and all("valid SAR fraction" in d["reason"] for d in res.refused)
    assert res.kept > 0


def test_geotiff_source_aligns_like_the_tiles(built):
    """The mosaic written as an EPSG:3857 GeoTIFF (as tms_to_geotiff does) pairs like the
    tiles it came from."""
    from sarlo_dask.optical import FolderTiles
    from sarlo_dask.optical.mosaic import build_mosaic, write_geotiff
    from sarlo_dask.optical.pair import fit_points, footprint_bbox

    root, work, cfg, _ = built
    ds = open_scene_store(scene_store_url(work, "fine")).load()
    w = tile_windows("fine", ds.sizes["azimuth"], ds.sizes["range"], 256, 128)[0]
    folder = FolderTiles(cfg.optical, ZOOM)
    _, latlon = fit_points(w, ds, 0)
    west, south, east, north = footprint_bbox(latlon, ZOOM)
    path = root / "ground.tif"
    write_geotiff(
        build_mosaic(folder, west - 0.001, south - 0.001, east + 0.001, north + 0.001), str(path)
    )
    a_img, a_meta = pair_tile(w, ds, folder, PairConfig(zoom=ZOOM))
    b_img, b_meta = pair_tile(w, ds, GeoTIFFSource(str(path)), PairConfig(zoom=ZOOM))
    assert a_meta["status"] == "ok" and b_meta["status"] == "ok", b_meta["status"]
    assert b_meta["zoom"] is None and b_meta["source"] == f"geotiff:{path}"
    diff = np.abs(a_img.astype(int) - b_img.astype(int))
    assert diff.max() <= 1, "same pixels, same georeferencing (up to float rounding)"


def test_save_mosaic_writes_a_georeferenced_tiff(built, client, tmp_path):
    import rasterio

    root, work, cfg, _ = built
    w2 = tmp_path / "work"
    shutil.copytree(Path(work, "scenes"), w2 / "scenes")
    tile_scenes(str(w2), cfg.model_copy(update={"save_mosaic": True}), client, scene_ids=["coarse"])
    tif = next((w2 / "tiles" / "coarse").glob("*.optic_mosaic.tif"))
    with rasterio.open(tif) as f:
        assert f.crs.to_epsg() == 3857 and f.count == 3
        assert f.read_masks(1).any()


def test_reconstruct_cli_rebuilds_the_optical_image(built):
    root, work, cfg, _ = built
    meta = sorted(Path(work, "tiles", "fine").glob("*.meta.json"))[0]
    out = root / "rebuilt.png"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "sarlo_dask.cli",
            "optical",
            "reconstruct",
            str(meta),
            "--source",
            cfg.optical,
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    from PIL import Image

    built_png = str(meta).replace(".meta.json", ".optic.png")
    assert np.array_equal(np.asarray(Image.open(out)), np.asarray(Image.open(built_png)))


@pytest.mark.parametrize(
    ("mode", "words"),
    [
        ("500", "HTTP 500"),
        ("timeout", "Timeout"),
        ("drop", "Connection"),
        ("garbage", "not an image"),
    ],
)
def test_stage_over_http_with_a_failing_server_then_a_later_run_fills_in(
    built, client, tmp_path, mode, words, fault_table
):
    """Workers fetch through the server; while it fails, tiles say why and the scene stays
    incomplete, with no optical image; the next run completes it."""
    from .tileserver import TileServer

    root, work, cfg, _ = built
    srv = TileServer([])
    try:
        http_cfg = cfg.model_copy(
            update={
                "optical": srv.url,
                "tile_cache": str(tmp_path / "c"),
                "zoom": ZOOM,
                "http_timeout": 1.0,
                "http_retries": 1,
                "http_backoff": 0.01,
                # 12 timeouts only (below), which a prefetch would take: the tile tasks'
                # own fetches are what fail here (the others fail in both)
                "prefetch_tiles": 0 if mode == "timeout" else 256,
            }
        )
        w2 = tmp_path / "work"
        shutil.copytree(Path(work, "scenes"), w2 / "scenes")
        # timeouts cost seconds each: the first 12 requests only (some windows still fail)
        srv.faults["all"] = (mode, 12 if mode == "timeout" else 10**9)
        first = tile_scenes(str(w2), http_cfg, client, scene_ids=["coarse"])[0]
        failed = {d["key"] for d in first.optical_failed}
        optic = {p.name.split(".")[0] for p in (w2 / "tiles" / "coarse").glob("*.optic.png")}
        srv.faults.clear()
        second = tile_scenes(str(w2), http_cfg, client, scene_ids=["coarse"])[0]
        n_optic = len(list((w2 / "tiles" / "coarse").glob("*.optic.png")))
        fault_table(
            f"optical server: {mode}",
            f"tiles say '{words}', a re-run fills in",
            f"server answered {srv.served[mode]} x {mode}; {len(failed)} tiles failed "
            f"({first.optical_failed[0]['reason'] if failed else '-'}); "
            f"re-run: {second.status}, {n_optic}/{second.kept} optical",
            second.kept - n_optic,
        )
        assert srv.served[mode] > 0  # the server did fail
        assert first.status == "incomplete" and failed
        other = [d["reason"] for d in first.optical_failed if words not in d["reason"]]
        assert not other, other
        assert not failed & optic  # no optical image for a failed tile: nothing made up
        assert second.status == "done" and not second.optical_failed
        assert n_optic == second.kept
    finally:
        srv.close()


def test_a_server_without_imagery_404_gives_no_optical_and_no_retry(
    built, client, tmp_path, fault_table
):
    """404 means the source has no imagery there: tiles keep their SAR members, get no optical
    image (nothing made up), say why, and are not fetched again by a later run."""
    from .tileserver import TileServer

    root, work, cfg, _ = built
    srv = TileServer([])
    try:
        http_cfg = cfg.model_copy(update={"optical": srv.url, "tile_cache": str(tmp_path / "c")})
        w2 = tmp_path / "work"
        shutil.copytree(Path(work, "scenes"), w2 / "scenes")
        srv.faults["all"] = ("404", 10**9)
        first = tile_scenes(str(w2), http_cfg, client, scene_ids=["coarse"])[0]
        asked = srv.requests
        second = tile_scenes(str(w2), http_cfg, client, scene_ids=["coarse"])[0]
    finally:
        srv.close()
    n_optic = len(list((w2 / "tiles" / "coarse").glob("*.optic.png")))
    fault_table(
        "optical server: 404 everywhere",
        "no optical, reason given, not retried",
        f"server answered {srv.served['404']} x 404; "
        f"{len(first.optical_failed)}/{first.kept} without optical "
        f"({first.optical_failed[0]['reason'] if first.optical_failed else '-'}); "
        f"re-run: {second.status}, {srv.requests - asked} requests",
        0 if first.kept == second.kept else abs(first.kept - second.kept),
    )
    assert srv.served["404"] > 0  # the server did answer 404
    assert first.kept and len(first.optical_failed) == first.kept and n_optic == 0
    assert all("tiles empty" in d["reason"] for d in first.optical_failed)
    assert first.status == "done" and second.status == "skipped"  # nothing to retry
    assert srv.requests == asked


def test_refined_lee_smooths_speckle_and_keeps_edges():
    from sarlo_dask.geometry.tiles import refined_lee

    rng = np.random.default_rng(3)
    truth = np.ones((128, 128))
    truth[:, 64:] = 20.0  # a step edge, 13 dB
    speckled = truth * rng.exponential(1.0, truth.shape)  # single-look intensity
    out = refined_lee(speckled)
    flat_in, flat_out = speckled[10:-10, 8:56], out[10:-10, 8:56]
    enl_in = flat_in.mean() ** 2 / flat_in.var()
    enl_out = flat_out.mean() ** 2 / flat_out.var()
    assert enl_out > 4 * enl_in  # speckle reduced
    assert abs(flat_out.mean() / flat_in.mean() - 1) < 0.1  # radiometry kept
    # the edge stays sharp: the columns right next to it keep their own level
    assert out[10:-10, 62].mean() < 3 and out[10:-10, 65].mean() > 12
    assert np.allclose(refined_lee(np.full((32, 32), 5.0)), 5.0)
    z = speckled.copy()
    z[:5] = 0
    assert not refined_lee(z)[:5].any()


def test_sigma0_previews_keep_the_calibration_through_resampling(client, tmp_path):
    """A scene with SigmaZeroSFPoly: after 0.3 -> 0.8 m resampling the clutter's sigma0 is
    unchanged (the radiometric scale factors follow the kept bandwidth)."""
    from sarlo_dask.sim.scene import SimulationSpec, simulate_scene

    path = tmp_path / "cal.nitf"
    sf = 0.05  # sigma0 = sf |z|^2; clutter has unit mean power: sigma0 = -13.0 dB
    simulate_scene(
        path, SimulationSpec(rows=1024, cols=1024, sigma0_sf=sf, nesz_db=None, n_targets=0)
    )
    work = str(tmp_path / "work")
    assert standardize_scenes([str(path)], work, SCFG, client)[0].status == "done"
    res = tile_scenes(work, TileConfig(size=256, stride=256, speckle_filter=True), client)[0]
    assert res.kept == 1
    meta = json.loads(next(Path(work, "tiles", "cal").glob("*.meta.json")).read_text())
    assert meta["preview"]["scale"] == "sigma0 dB"
    # the median of exponential clutter power is ln 2 times its mean
    got = meta["sigma0_db"]["median"] - 10 * np.log10(np.log(2))
    assert abs(got - 10 * np.log10(sf)) < 0.3, got
    assert Path(work, "tiles", "cal", "cal_a000_r000.sar_lee.png").exists()


def test_tiles_on_s3_equal_tiles_on_disk(built, scenes, client, s3):
    """{work} on moto's S3: the same members, byte for byte, as on a local disk."""
    import s3fs

    root, work, cfg, _ = built
    fs = s3fs.S3FileSystem(**s3)
    scene = scenes["coarse"]
    s3_work = "s3://sarlo/work"
    scfg = SCFG.model_copy(update={"storage_options": s3})
    assert standardize_scenes([str(scene)], s3_work, scfg, client)[0].status == "done"
    tcfg = cfg.model_copy(update={"storage_options": s3})
    res = tile_scenes(s3_work, tcfg, client)
    assert [r.status for r in res] == ["done"]
    local = sorted(Path(work, "tiles", "coarse").iterdir())
    remote = sorted(fs.ls("sarlo/work/tiles/coarse"))
    assert [p.name for p in local] == [r.rsplit("/", 1)[-1] for r in remote]
    for p, r in zip(local, remote, strict=True):
        if p.name.endswith(".meta.json"):  # the source scene URL differs; all else is equal
            a, b = json.loads(p.read_text()), json.loads(fs.cat(r))
            a.pop("source_url"), b.pop("source_url")
            assert a == b
        else:
            assert p.read_bytes() == fs.cat(r), p.name
    assert tile_scenes(s3_work, tcfg, client)[0].status == "skipped"


def test_a_busy_server_429_is_waited_for_and_a_rate_limit_holds(built, client, tmp_path):
    """Every XYZ tile answered 429 (Retry-After: 1) the first time: each is asked again no
    sooner than a second later and the stage completes. With http_rate 10 per worker, no
    second sees more than the two workers' 20 requests (21: a request at a second's edge
    counts in the next; unlimited, it sees more). The 429 case asks for a zoom level less: a
    quarter of the tiles, each waited for a second."""
    from collections import Counter

    from .tileserver import TileServer

    root, work, cfg, _ = built
    seconds: dict[str, int] = {}
    asked: dict[str, int] = {}
    for case, rate in (("unlimited", 0.0), ("429", 0.0), ("rate 10", 10.0)):
        srv = TileServer([])
        try:
            http_cfg = cfg.model_copy(
                update={
                    "optical": srv.url,
                    "tile_cache": str(tmp_path / f"cache-{case}"),
                    "zoom": ZOOM - 1 if case == "429" else ZOOM,
                    "http_retries": 1,
                    "http_backoff": 0.01,
                    "http_rate": rate,
                }
            )
            w2 = tmp_path / f"work-{case}"
            shutil.copytree(Path(work, "scenes"), w2 / "scenes")
            if case == "429":
                srv.faults["each"] = ("429", 1)
            res = tile_scenes(str(w2), http_cfg, client, scene_ids=["coarse"])[0]
            assert res.status == "done" and not res.optical_failed, res
            times = list(srv.times)
        finally:
            srv.close()
        per_second = Counter(int(t) for t, _, _ in times)
        seconds[case], asked[case] = max(per_second.values()), len(times)
        if case == "429":
            busy = {p: t for t, p, what in times if what == "429"}
            again = {p: t for t, p, what in times if what == "200"}
            assert busy and set(busy) == set(again)  # every tile: 429 once, then served
            assert min(again[p] - busy[p] for p in busy) >= 0.95
    print(f"busiest second: {seconds}, requests: {asked}")
    assert asked["rate 10"] > 2 * (2 * 10 + 1)  # enough requests to meet the limit for seconds
    assert seconds["rate 10"] <= 2 * 10 + 1 < seconds["unlimited"], seconds


def test_metadata_mode_fetches_nothing_and_reconstruction_gives_the_fetched_view(
    built, client, tmp_path
):
    """tiles.optical_mode metadata (SARLO-80 v2's way): the XYZ server gets no request at
    build time, each tile records the source, zoom and fit points with status 'metadata
    only' (not a failure: the scene is done, nothing asks for a retry), no optic.png; the
    view `sarlo optical reconstruct` makes from that meta.json equals, pixel for pixel, the
    one a fetching build warped."""
    from PIL import Image

    from sarlo_dask.optical.reconstruct import reconstruct_optical
    from sarlo_dask.optical.sources import source_from_spec

    from .tileserver import TileServer

    root, work, cfg, _ = built
    srv = TileServer([])
    try:
        fetched, listed = tmp_path / "fetched", tmp_path / "listed"
        for w in (fetched, listed):
            shutil.copytree(Path(work, "scenes"), w / "scenes")
        http = {"optical": srv.url, "tile_cache": str(tmp_path / "cache"), "zoom": ZOOM}
        meta_cfg = cfg.model_copy(update={**http, "optical_mode": "metadata"})
        res = tile_scenes(str(listed), meta_cfg, client, scene_ids=["coarse"])[0]
        assert srv.requests == 0  # nothing fetched
        assert res.status == "done" and not res.optical_failed and res.kept > 0
        tiles = Path(listed, "tiles", "coarse")
        assert not list(tiles.glob("*.optic.png"))
        fetch_cfg = cfg.model_copy(update={**http, "tile_cache": str(tmp_path / "cache2")})
        assert tile_scenes(str(fetched), fetch_cfg, client, scene_ids=["coarse"])[0].kept
        source = source_from_spec(srv.url, ZOOM, str(tmp_path / "cache3"))
        for path in sorted(tiles.glob("*.meta.json")):
            meta = json.loads(path.read_text())
            opt = meta["optical"]
            assert opt["status"] == "metadata only" and opt["retry"] is False
            assert opt["zoom"] == ZOOM and opt["fit_points"] and opt["source"]
            image = reconstruct_optical(meta, source)
            built_png = Path(
                fetched, "tiles", "coarse", path.name.replace(".meta.json", ".optic.png")
            )
            assert np.array_equal(image, np.asarray(Image.open(built_png))), path.name
    finally:
        srv.close()


def test_an_xyz_cache_on_s3_is_shared_by_the_workers_and_later_builds(built, client, tmp_path, s3):
    """tiles.tile_cache on moto's S3 with the XYZ prefetch: the server is asked for each XYZ
    tile exactly once per build, by prefetch tasks spread over both workers (the tile tasks
    ask for nothing: they find every tile cached); a later build (another {work}) asks for
    nothing and warps the same optical views; a re-run in the same {work} plans nothing."""
    import time
    from collections import Counter

    import s3fs

    from .tileserver import TileServer

    root, work, cfg, _ = built
    srv = TileServer([])
    try:
        update = {
            "optical": srv.url,
            "tile_cache": "s3://sarlo/xyz-cache",
            "tile_cache_options": s3,
            "zoom": ZOOM,
            "prefetch_tiles": 8,  # a few tasks for the 2 workers (256 in a real build)
        }
        http_cfg = cfg.model_copy(update=update)
        views, done, seconds = [], [], []
        for n in range(2):
            w = tmp_path / f"work{n}"
            shutil.copytree(Path(work, "scenes"), w / "scenes")
            t0 = time.perf_counter()
            res = tile_scenes(str(w), http_cfg, client, ["coarse"], on_prefetch=done.append)[0]
            seconds.append(time.perf_counter() - t0)
            assert res.status == "done" and not res.optical_failed, res
            views.append(
                {p.name: p.read_bytes() for p in (w / "tiles" / "coarse").glob("*.optic.png")}
            )
            if n == 0:
                per_tile = Counter(srv.paths)
        again = tile_scenes(str(w), http_cfg, client, ["coarse"], on_prefetch=done.append)[0]
        found = s3fs.S3FileSystem(**s3).find("sarlo/xyz-cache")
        cached = [p for p in found if not p.endswith(".sha256")]  # each tile's digest beside it
        assert len(found) == 2 * len(cached)
    finally:
        srv.close()
    first, second = done[:2]
    for pf, s in zip(done, seconds, strict=True):
        print(f"{pf.line()}; the whole tile stage {s:.1f} s")
    assert per_tile and set(per_tile.values()) == {1}, per_tile  # each tile asked for once
    assert first.fetched == first.planned == len(per_tile) == len(cached) and not first.failed
    assert len(first.workers) == 2, first.workers  # the fetches were spread over both workers
    assert sum(first.workers.values()) == first.planned and first.tasks > 2
    assert srv.requests == len(per_tile)  # the second build fetched nothing
    assert second.cached == second.planned == first.planned and second.tasks == 0
    assert views[0] == views[1] and views[0]
    assert again.status == "skipped" and len(done) == 2  # complete tiles need no tiles


def test_a_damaged_cached_xyz_tile_is_said_by_the_build_and_fetched_again(built, client, tmp_path):
    """The XYZ cache in {work}: a cached image whose bytes were flipped after its commit is
    found by the prefetch plan (which reads what it counts on), named in the Prefetch outcome
    (the build's DAMAGED line, not only a worker's log), fetched again once, and the tiles
    equal those made from the undamaged cache."""
    from collections import Counter

    from .tileserver import TileServer

    root, work, cfg, _ = built
    srv = TileServer([])
    done, trees = [], []
    w = tmp_path / "work"
    shutil.copytree(Path(work, "scenes"), w / "scenes")
    http_cfg = cfg.model_copy(update={"optical": srv.url, "zoom": ZOOM, "prefetch_tiles": 8})
    try:
        for n in range(2):
            res = tile_scenes(str(w), http_cfg, client, ["coarse"], on_prefetch=done.append)[0]
            assert res.status == "done" and not res.optical_failed, res
            tiles = w / "tiles" / "coarse"
            trees.append({p.name: p.read_bytes() for p in sorted(tiles.iterdir())})
            if n == 0:  # damage one cached image, and let the tiles be made again
                images = sorted(p for p in (w / "xyz-cache").rglob("*") if p.name.isdigit())
                hit = images[len(images) // 2]
                data = bytearray(hit.read_bytes())
                data[len(data) // 2] ^= 0xFF
                hit.write_bytes(bytes(data))
                recorded = hit.with_name(f"{hit.name}.sha256").read_text()
                assert hashlib.sha256(hit.read_bytes()).hexdigest() != recorded  # damaged
                shutil.rmtree(tiles)
                (w / "tiles" / "coarse.done.json").unlink()
                before = Counter(srv.paths)
    finally:
        srv.close()
    again = Counter(srv.paths) - before
    z, x, y = hit.parts[-3:]
    rel = hit.relative_to(w)
    assert [d.line() for d in done[1].damaged] == [
        f"DAMAGED {rel.as_posix()}: sha256 differs from the one recorded at commit; "
        f"rebuilding cached XYZ tile {z}/{x}/{y}"
    ]
    assert dict(again) == {f"/{z}/{x}/{y}.png": 1}  # fetched again, nothing else
    assert done[1].fetched == 1 and done[1].cached == done[1].planned - 1
    assert trees[0] == trees[1] and trees[0]


def test_a_failed_prefetch_is_recorded_and_the_tile_tasks_fetch_again(
    built, client, tmp_path, s3, fault_table
):
    """Some XYZ tiles answer 500 to every attempt of their prefetch task: the prefetch
    records them, the tile tasks that need them fetch them again (the server now answers),
    and the build's tiles equal those of a build that saw no fault, byte for byte."""
    from collections import Counter

    from .tileserver import TileServer

    root, work, cfg, _ = built
    srv = TileServer([])
    trees, done = [], []
    try:
        for n, faulty in enumerate((False, True)):
            http_cfg = cfg.model_copy(
                update={
                    "optical": srv.url,
                    "tile_cache": f"s3://sarlo/xyz-{n}",
                    "tile_cache_options": s3,
                    "zoom": ZOOM,
                    "http_retries": 1,
                    "http_backoff": 0.01,
                    "prefetch_tiles": 8,
                }
            )
            if faulty:
                clean = sorted(set(srv.paths))
                srv.paths.clear()
                for path in clean[::7]:  # 500 to both attempts of the prefetch
                    z, x, y = (int(p) for p in path.strip("/").split(".")[0].split("/"))
                    srv.faults[(z, x, y)] = ("500", 2)
            w = tmp_path / f"work{n}"
            shutil.copytree(Path(work, "scenes"), w / "scenes")
            res = tile_scenes(str(w), http_cfg, client, ["coarse"], on_prefetch=done.append)[0]
            assert res.status == "done" and not res.optical_failed, res
            tiles = w / "tiles" / "coarse"
            trees.append({p.name: p.read_bytes() for p in sorted(tiles.iterdir())})
    finally:
        srv.close()
    faulted = {f"/{z}/{x}/{y}.png" for z, x, y in srv.faults}
    per_tile = Counter(srv.paths)
    pf = done[1]
    fault_table(
        "XYZ prefetch: 500 to every attempt",
        "recorded; the tile tasks fetch again",
        f"{len(pf.failed)} of {pf.planned} tiles failed in the prefetch ({pf.failed[0]}); "
        f"tiles equal a clean build's: {trees[0] == trees[1]}",
        0 if trees[0] == trees[1] else 1,
    )
    assert faulted and srv.served["500"] == 2 * len(faulted)
    assert len(pf.failed) == len(faulted) and all("HTTP 500" in r for r in pf.failed)
    assert pf.fetched == pf.planned - len(faulted)
    assert all(per_tile[p] >= 3 for p in faulted)  # 2 prefetch attempts, then a tile task
    assert {per_tile[p] for p in per_tile if p not in faulted} == {1}
    assert trees[0] == trees[1] and trees[0]


def test_the_prefetch_plans_the_tiles_the_pairing_fetches(built):
    """`xyz_tiles_needed` names exactly the XYZ tiles `pair_tile` asks its source for, with
    the corners' fit and with a grid of fit points."""
    from sarlo_dask.optical.pair import xyz_tiles_needed
    from sarlo_dask.optical.source import XYZSource
    from sarlo_dask.optical.sources import FolderTiles

    class Recording(XYZSource):
        kind = "recording"
        zoom = ZOOM

        def __init__(self, root: str) -> None:
            self.folder, self.asked = FolderTiles(root, ZOOM), []

        @classmethod
        def parse(cls, spec, zoom, **options):
            return None

        def describe(self) -> str:
            return "recording"

        def fetch(self, tiles):
            self.asked += tiles
            return self.folder.fetch(tiles)

    root, work, cfg, _ = built
    ds = open_scene_store(scene_store_url(work, "coarse"), chunks=None)
    windows = tile_windows("coarse", ds.sizes["azimuth"], ds.sizes["range"], 256, 128)
    ds = ds[["lat", "lon", "hae"]].load()
    for fit_grid in (0, 3):
        pcfg = PairConfig(zoom=ZOOM, fit_grid=fit_grid)
        for w in windows[:: max(1, len(windows) // 5)]:
            source = Recording(str(root / "optical"))  # a new repr: no decoded tile reused
            pair_tile(w, ds, source, pcfg)
            assert sorted(source.asked) == sorted(xyz_tiles_needed(w, ds, pcfg)), w.key


def test_a_fetch_plan_gives_each_uncached_tile_to_one_group():
    from sarlo_dask.stages.prefetch_stage import XYZNeeds, fetch_plan

    a = XYZNeeds("a", [(9, 1, 1), (9, 1, 2), (9, 2, 1)], [(9, 1, 1)], 2, 0.0)
    b = XYZNeeds("b", [(9, 2, 1), (9, 3, 0), (9, 0, 5)], [], 1, 0.0)
    plan = fetch_plan([b, a], 2)
    assert plan.planned == 5 and plan.cached == 1
    assert plan.groups == [[(9, 0, 5), (9, 1, 2)], [(9, 2, 1), (9, 3, 0)]]
    assert fetch_plan([a, b], 2) == plan and fetch_plan([], 2).groups == []


@given(
    st.lists(st.sets(st.integers(0, 11), max_size=6), min_size=1, max_size=5),
    st.lists(st.integers(0, 11), max_size=4, unique=True),
    st.integers(1, 4),
    st.randoms(use_true_random=False),
)
@settings(max_examples=200, deadline=None)
def test_the_streaming_prefetch_fetches_each_tile_once_and_starts_a_scene_when_its_tiles_are_in(
    scenes, cached, size, rnd
):
    """XYZPrefetch against brute force: scenes' plans and fetch outcomes arrive in any order;
    every uncached tile is in exactly one fetch group, a scene is released exactly once, and
    only when every tile it needs is cached or fetched."""
    from sarlo_dask.driver.outcomes import PrefetchOutcome
    from sarlo_dask.stages.prefetch_stage import XYZNeeds, XYZPrefetch

    def tile(i: int) -> tuple[int, int, int]:
        return (9, i, 0)

    in_cache = {tile(i) for i in cached}
    book, fetched, released = XYZPrefetch(size), set(in_cache), []
    pending = [("plan", n) for n in range(len(scenes))]
    while pending:
        what, n = pending.pop(rnd.randrange(len(pending)))
        if what == "plan":
            needs = sorted(tile(i) for i in scenes[n])
            ids, ready = book.plan(XYZNeeds(str(n), needs, sorted(in_cache & set(needs)), 1, 0.0))
            pending += [("fetch", i) for i in ids]
            out = [str(n)] if ready else []
        else:
            fetched |= set(book.groups[n])
            out = book.fetched(n, PrefetchOutcome(len(book.groups[n]), 1, 0, [], "w", 0.0))
        for sid in out:
            assert {tile(i) for i in scenes[int(sid)]} <= fetched, sid
        released += out
    assert sorted(released) == sorted(map(str, range(len(scenes))))
    grouped = [t for g in book.groups for t in g]
    wanted = {tile(i) for s in scenes for i in s}
    assert sorted(grouped) == sorted(wanted - in_cache)  # each uncached tile once
    assert all(len(g) <= size for g in book.groups)
    assert book.record.planned == len(wanted) and book.record.cached == len(wanted & in_cache)
