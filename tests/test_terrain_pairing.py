"""A simulated scene with 80 m of relief built with and without its DEM: tie points against
dense DEM projection, optical markers against their targets in every tile, the misalignment a
constant height leaves (recorded and flagged), terrain incidence against the simulator's
slopes. The tile stage runs on a real two-worker cluster against a loopback XYZ server."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sarpy.geometry.point_projection import ground_to_image

from sarlo_dask.config import StandardizeConfig, TileConfig
from sarlo_dask.geometry.sicd import sicd_from_xml
from sarlo_dask.geometry.tiles import tile_llh
from sarlo_dask.pipeline import standardize_scenes, tile_scenes
from sarlo_dask.sim.scene import simulate_scene
from sarlo_dask.sim.terrain import terrain_from_dict, terrain_normal_enu
from sarlo_dask.stages.standardize import open_scene_store
from sarlo_dask.store import Store

from .helpers import peak, terrain_spec
from .tileserver import TileServer

ZOOM = 19
SIZE, STRIDE = 256, 128
HILLY = terrain_spec(seed=3, n_targets=40)


@pytest.fixture(scope="module")
def built(client, tmp_path_factory):
    """{case: (work, scene store, truth)}: the DEM used to geolocate; only to check (tiles
    off by more than a pixel flagged); only to check and record (every view shipped)."""
    root = tmp_path_factory.mktemp("terrain-build")
    path = root / "hilly.nitf"
    truth = simulate_scene(path, HILLY)
    server = TileServer([(t["llh"][0], t["llh"][1]) for t in truth["targets"]])
    out = {}
    try:
        for case in ("geolocation", "check", "recorded"):
            use = "geolocation" if case == "geolocation" else "check"
            dem = str(path) + ".dem.tif"
            cfg = StandardizeConfig(min_size=64, store_chunk=128, dem=dem, dem_use=use)
            work = str(root / f"work-{case}")
            res = standardize_scenes([str(path)], work, cfg, client)[0]
            assert res.status == "done", res.reason
            limit = None if case == "recorded" else 1.0
            tiles = TileConfig(
                size=SIZE, stride=STRIDE, optical=server.url, zoom=ZOOM, max_terrain_shift_px=limit
            )
            done: list = []
            results = tile_scenes(work, tiles, client, on_prefetch=done.append)
            assert all(r.status == "done" for r in results)
            out[case] = (work, open_scene_store(res.store).load(), truth)
            out[f"{case}-requests"] = Counter(server.paths)  # so far
            out[f"{case}-prefetch"] = done[0]
        out["server"] = server
        yield out
    finally:
        server.close()


def _tiles(work: str) -> list[tuple[dict, Path]]:
    found = sorted(Path(Store(work).tile_dir("hilly")).glob("*.meta.json"))
    return [(json.loads(p.read_text()), p) for p in found]


def test_tie_points_are_within_their_bound_of_dense_dem_projection(built):
    from sarlo_dask.geometry.dem import scene_dem
    from sarlo_dask.geometry.geolocation import llh_to_ecf
    from sarlo_dask.geometry.terrain import project_to_dem

    _, ds, _ = built["geolocation"]
    xml = ds.attrs["sicd_xml"]
    bound = StandardizeConfig().dem_bound_m
    assert ds.attrs["geolocation_error_estimate_m"] <= bound / 2
    assert ds.attrs["geolocation_height"].startswith("DEM ")
    rng = np.random.default_rng(1)
    a = rng.uniform(0, ds.sizes["azimuth"] - 1, 3000)
    r = rng.uniform(0, ds.sizes["range"] - 1, 3000)
    dense = project_to_dem(xml, r, a, scene_dem(ds.attrs["dem"], xml), shadows=False)
    interpolated = llh_to_ecf(tile_llh(ds.lat, ds.lon, ds.hae, a, r))
    err = np.linalg.norm(interpolated - dense.ecf, axis=1)
    assert err.max() <= bound, err.max()


def _marker_offsets(
    work: str, ds, truth, flat: bool = False
) -> list[tuple[str, float, float, dict]]:
    """(tile key, distance in SAR px from the nearest optical marker (a red blob of optic.png)
    to where it should be, the distance from there to the target's peak, the tile's terrain
    section) for every target well inside a tile with an optical image. A marker should be on
    its target's peak; with `flat` (a constant-height geolocation) where the scene's constant
    height puts the target's lat/lon instead."""
    from scipy import ndimage

    from sarlo_dask.geometry.geolocation import llh_to_ecf

    sicd = sicd_from_xml(ds.attrs["sicd_xml"])
    h0 = float(ds.hae.values.mean())  # one height: the SCP's
    slc = ds.slc.values
    out = []
    for meta, path in _tiles(work):
        a0, r0 = meta["crop"]["azimuth"][0], meta["crop"]["range"][0]
        optic = path.with_name(meta["key"] + ".optic.png")
        if not optic.exists():
            continue
        red = np.asarray(Image.open(optic))
        red = (red[..., 0] > 200) & (red[..., 1] < 60)
        labels, n = ndimage.label(red)
        blobs = np.array(ndimage.center_of_mass(red, labels, range(1, n + 1))).reshape(-1, 2)
        blobs += [a0, r0]
        for t in truth["targets"]:
            (row, col), _, _ = ground_to_image(np.array(t["ecf"]), sicd, tolerance=1e-6)
            if not (12 <= col - a0 < SIZE - 12 and 12 <= row - r0 < SIZE - 12):
                continue
            pa, pr = peak(slc, col, row)
            ea, er = pa, pr
            if flat:
                ecf = llh_to_ecf(np.array([[t["llh"][0], t["llh"][1], h0]]))[0]
                (er, ea), _, _ = ground_to_image(ecf, sicd, tolerance=1e-6)
                if not (8 <= ea - a0 < SIZE - 8 and 8 <= er - r0 < SIZE - 8):
                    continue  # its marker is drawn outside this tile
            found = np.hypot(blobs[:, 0] - ea, blobs[:, 1] - er).min() if n else np.inf
            out.append(
                (meta["key"], float(found), float(np.hypot(ea - pa, er - pr)), meta["terrain"])
            )
    return out


def test_with_the_dem_every_marker_is_within_a_pixel_of_its_target(built):
    work, ds, truth = built["geolocation"]
    metas = _tiles(work)
    assert len(metas) >= 9
    assert all(m["optical"]["status"] == "ok" for m, _ in metas), [
        m["optical"]["status"] for m, _ in metas
    ]
    offsets = _marker_offsets(work, ds, truth)
    assert len(offsets) >= 20 and len({o[0] for o in offsets}) >= 6
    worst = max(offsets, key=lambda o: o[1])
    assert worst[1] <= 1.0, worst


def test_without_it_the_recorded_shift_shows_the_misalignment_and_flags_the_tiles(built):
    work, ds, truth = built["check"]
    metas = _tiles(work)
    shifts = {m["key"]: m["terrain"]["shift_px"] for m, _ in metas}
    assert max(shifts.values()) > 5.0  # tens of metres at 0.8 m pixels
    for m, _ in metas:  # flagged as TileConfig.max_terrain_shift_px (1 px) says
        flagged = m["optical"]["status"].startswith("failed: the terrain puts")
        assert flagged == (m["terrain"]["shift_px"] > 1.0), (m["key"], m["optical"]["status"])
    # the same build with the shift only recorded ships every optical view: markers miss their
    # targets (the nearest marker may be another target's, never further than the truth's)
    work, ds, truth = built["recorded"]
    offsets = _marker_offsets(work, ds, truth, flat=True)
    assert len(offsets) >= 20
    found = np.array([o[1] for o in offsets])
    assert found.max() <= 1.0, found  # each marker is where the constant height draws it,
    misses = np.array([o[2] for o in offsets])  # this far from its target,
    recorded = np.array([o[3]["shift_px"] for o in offsets])  # as the tile records
    assert misses.max() > 5.0
    assert np.all(misses <= recorded + 0.5), np.c_[misses, recorded]


def test_terrain_incidence_follows_the_simulators_slopes(built):
    from jsonschema import Draft202012Validator

    from sarlo_dask.dataset import meta_schema
    from sarlo_dask.geometry.geolocation import llh_to_ecf

    props = meta_schema()["properties"]

    work, ds, truth = built["geolocation"]
    terrain = terrain_from_dict(truth["terrain"])
    sicd = sicd_from_xml(ds.attrs["sicd_xml"])
    arp = np.asarray(sicd.Position.ARPPoly(sicd.SCPCOA.SCPTime))
    tilted = 0
    for meta, _ in _tiles(work):
        angles = meta["incidence_angles"]
        for name in ("terrain", "incidence_angles"):  # as the release's schema describes them
            Draft202012Validator(props[name]).validate(meta[name])
        a0, r0 = meta["crop"]["azimuth"][0], meta["crop"]["range"][0]
        s = np.linspace(0, SIZE - 1, 33)
        a, r = (g.ravel() for g in np.meshgrid(a0 + s, r0 + s, indexing="ij"))
        llh = tile_llh(ds.lat, ds.lon, ds.hae, a, r)
        # the simulator's mean normal over the tile's ground, in ECEF
        from sarkit.wgs84 import east, north, up

        enu = terrain_normal_enu(terrain, llh[:, 0], llh[:, 1])  # the analytic surface's
        basis = np.stack([east(llh), north(llh), up(llh)], axis=1)  # (n, 3 axes, 3 ecf)
        normal = np.einsum("na,nae->ne", enu, basis).mean(axis=0)
        normal /= np.linalg.norm(normal)
        centre = llh_to_ecf(
            tile_llh(ds.lat, ds.lon, ds.hae, np.array([a0 + 127.5]), np.array([r0 + 127.5]))
        )[0]
        los = (arp - centre) / np.linalg.norm(arp - centre)
        want = float(np.degrees(np.arccos(normal @ los)))
        assert abs(angles["terrain_deg"] - want) < 0.5, (meta["key"], angles, want)
        tilted += abs(angles["terrain_deg"] - angles["ellipsoid_deg"]) > 3.0
        assert meta["terrain"]["layover_fraction"] == 0.0
        assert meta["terrain"]["relief_m"] > 0.0
    assert tilted >= 3, "slopes change the incidence by degrees in several tiles"


def test_mesh_warped_views_are_rebuilt_from_meta_json_pixel_for_pixel(built, tmp_path):
    from sarlo_dask.optical import HTTPTiles, reconstruct_optical

    work, _, _ = built["geolocation"]
    source = HTTPTiles(built["server"].url, zoom=ZOOM, cache_dir=str(tmp_path / "cache"))
    models = []
    for meta, path in _tiles(work):
        models.append((meta["optical"]["warp"]["model"], meta["optical"]["warp"]["grid"]))
        image = reconstruct_optical(meta, source)  # no DEM needed: the fit points hold it
        built_png = np.asarray(Image.open(path.with_name(meta["key"] + ".optic.png")))
        assert np.array_equal(image, built_png), meta["key"]
    assert any(model == "mesh" for model, _ in models), models  # the terrain asked for meshes


def test_the_recorded_shift_is_the_misalignment_at_each_target(built):
    """Two-sided: each target's shift where it lies (a tie-point variable, interpolated) is
    how far the constant height puts its optical marker."""
    from scipy.interpolate import RegularGridInterpolator

    from sarlo_dask.geometry.geolocation import llh_to_ecf

    _, ds, truth = built["check"]
    sicd = sicd_from_xml(ds.attrs["sicd_xml"])
    h0 = float(ds.hae.values.mean())
    shift = RegularGridInterpolator(
        (ds.tp_azimuth.values.astype(float), ds.tp_range.values.astype(float)),
        ds.terrain_shift_px.values.astype(float),
    )
    pairs = []
    for t in truth["targets"]:
        (row, col), _, _ = ground_to_image(np.array(t["ecf"]), sicd, tolerance=1e-6)
        flat = llh_to_ecf(np.array([[t["llh"][0], t["llh"][1], h0]]))[0]
        (frow, fcol), _, _ = ground_to_image(flat, sicd, tolerance=1e-6)
        inside = 0 <= col < ds.sizes["azimuth"] - 1 and 0 <= row < ds.sizes["range"] - 1
        if inside:
            pairs.append((float(np.hypot(frow - row, fcol - col)), float(shift([[col, row]])[0])))
    misses, recorded = np.array(pairs).T
    assert len(pairs) >= 20 and misses.max() > 5.0
    # the store keeps the shift's length per tie point: between tie points 16 px apart its
    # interpolation errs most where the shift turns through zero (a few tenths of a pixel per
    # pixel of slope there)
    np.testing.assert_allclose(recorded, misses, rtol=0.05, atol=1.5)


def test_the_prefetch_plans_the_meshes_footprints(built):
    """With meshes (the terrain bends the mapping), the prefetch still plans every tile the
    pairing needs: the server was asked for each once, all of them by the prefetch."""
    requests, prefetch = built["geolocation-requests"], built["geolocation-prefetch"]
    work, _, _ = built["geolocation"]
    assert any(m["optical"]["warp"]["model"] == "mesh" for m, _ in _tiles(work))
    assert set(requests.values()) == {1}, requests.most_common(3)
    assert prefetch.planned == len(requests) == prefetch.fetched + prefetch.empty
    assert not prefetch.failed
