"""Simulated scenes with terrain (sarlo_dask.sim.terrain): the DEM file, the targets on the
analytic surface judged by sarpy's ground_to_image, layover, the flat path untouched."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest

from sarlo_dask.sim.scene import SimulationSpec, Target, simulate_scene
from sarlo_dask.sim.terrain import (
    ORTHOMETRIC_CRS,
    dem_grid,
    project_to_terrain,
    terrain_for_spec,
    terrain_from_dict,
    terrain_gradient,
    terrain_height,
    terrain_normal_enu,
    write_dem_geotiff,
)

from .helpers import STEEP as STEEP_SETTINGS
from .helpers import terrain_spec

HILLY = terrain_spec(seed=1)
STEEP = terrain_spec(**STEEP_SETTINGS)


@pytest.fixture(scope="module")
def hilly(tmp_path_factory) -> tuple[Path, dict]:
    path = tmp_path_factory.mktemp("terrain") / "hilly.nitf"
    return path, simulate_scene(path, HILLY)


def _sicd(path: Path):
    from sarlo_dask.geometry.sicd import read_sicd_meta

    return read_sicd_meta(str(path))


def _dem(path: Path) -> tuple[object, np.ndarray, np.ndarray, np.ndarray]:
    """(crs, heights, lat, lon) of a GeoTIFF, lat/lon at its pixel centres (rasterio's)."""
    import rasterio
    from rasterio.transform import xy

    with rasterio.open(path) as src:
        assert src.dtypes == ("float32",) and src.block_shapes == [(256, 256)]
        heights = src.read(1)
        r, c = np.mgrid[0 : src.height, 0 : src.width]
        lon, lat = xy(src.transform, r.ravel(), c.ravel(), offset="center")
        return src.crs, heights, np.reshape(lat, r.shape), np.reshape(lon, r.shape)


def test_the_dem_is_the_analytic_surface_in_epsg_4979(hilly):
    from sarpy.geometry.geocoords import geodetic_to_ecf
    from sarpy.geometry.point_projection import ground_to_image

    path, truth = hilly
    dem = Path(str(path) + ".dem.tif")
    assert truth["dem"]["file"] == dem.name and truth["dem"]["crs"] == "EPSG:4979"
    crs, heights, lat, lon = _dem(dem)
    assert crs.to_epsg() == 4979
    terrain = terrain_from_dict(truth["terrain"])
    np.testing.assert_allclose(heights, terrain_height(terrain, lat, lon), rtol=0, atol=1e-4)
    # the relief the image sees: DEM points whose (sarpy) image position falls inside it
    sub = (slice(None, None, 3), slice(None, None, 3))
    llh = np.column_stack([lat[sub].ravel(), lon[sub].ravel(), heights[sub].ravel()])
    pix, _, _ = ground_to_image(geodetic_to_ecf(llh), _sicd(path))
    inside = np.all((pix >= 0) & (pix <= (HILLY.rows - 1, HILLY.cols - 1)), axis=1)
    seen = llh[inside, 2]
    assert seen.max() - seen.min() >= 60.0
    assert not inside.all()  # the DEM reaches past the footprint (its margin)
    # deterministic bytes: the same grid written again is the same file
    again = path.parent / "again.tif"
    write_dem_geotiff(again, *dem_grid(terrain, truth["dem"]))
    assert again.read_bytes() == dem.read_bytes()


def test_targets_lie_on_the_terrain_where_sarpy_images_them(hilly):
    from sarpy.geometry.point_projection import ground_to_image

    path, truth = hilly
    terrain = terrain_from_dict(truth["terrain"])
    targets = truth["targets"]
    ecf = np.array([t["ecf"] for t in targets])
    llh = np.array([t["llh"] for t in targets])
    pixels = np.array([[t["row"], t["col"]] for t in targets])
    got, _, _ = ground_to_image(ecf, _sicd(path), tolerance=1e-5, max_iterations=50)
    assert np.abs(got - pixels).max() < 0.01
    np.testing.assert_allclose(llh[:, 2], terrain_height(terrain, llh[:, 0], llh[:, 1]), atol=1e-3)
    assert np.ptp(llh[:, 2]) > 10.0  # not a constant height
    assert truth["layover_targets"] == 0 and all(t["intersections"] == 1 for t in targets)
    ge, gn = terrain_gradient(terrain, llh[:, 0], llh[:, 1])
    slope = np.rad2deg(np.arctan(np.hypot(ge, gn)))
    np.testing.assert_allclose([t["slope_deg"] for t in targets], slope)
    np.testing.assert_allclose(
        [t["normal_enu"] for t in targets], terrain_normal_enu(terrain, llh[:, 0], llh[:, 1])
    )
    stats = truth["terrain_stats"]
    assert abs(stats["relief_m"] - 80.0) < 0.5 and stats["max_facing_slope_deg"] < 33.0
    assert truth["spec"]["relief_m"] == 80.0
    assert terrain_for_spec(SimulationSpec(**truth["spec"])) == terrain  # a function of the spec
    # the SCP lies on the terrain: its pixel projects back onto it
    xml = _sicd(path).to_xml_string(tag="SICD", check_validity=False)
    (scp,) = project_to_terrain(xml, terrain, [(HILLY.rows // 2, HILLY.cols // 2)], 0.0, 400.0)
    np.testing.assert_allclose(scp[0], truth["scp_ecf"], rtol=0, atol=1e-3)


def test_a_flat_spec_takes_no_terrain_branch(tmp_path, monkeypatch):
    import sarlo_dask.sim.terrain as terrain

    def boom(*args, **kwargs):
        raise AssertionError("the flat path used the terrain")

    for name in ("terrain_truth", "check_terrain", "terrain_for_spec"):
        monkeypatch.setattr(terrain, name, boom)
    path = tmp_path / "flat.nitf"
    stale = Path(str(path) + ".dem.tif")
    stale.write_bytes(b"an older scene's DEM")
    spec = SimulationSpec(rows=300, cols=256, seed=3)
    truth = simulate_scene(path, spec)
    assert not stale.exists()
    written = json.loads(Path(str(path) + ".truth.json").read_text())
    assert written == json.loads(json.dumps(truth))
    assert set(truth) == {"spec", "scp_ecf", "targets"}
    assert "relief_m" not in truth["spec"] and truth["spec"]["hae"] == 150.0
    assert all(set(t) == {f.name for f in fields(Target)} for t in truth["targets"])
    np.testing.assert_allclose([t["llh"][2] for t in truth["targets"]], 150.0, atol=1e-2)


def test_layover_is_refused_unless_asked_then_reported(tmp_path):
    from dataclasses import replace

    from sarpy.geometry.point_projection import ground_to_image

    with pytest.raises(ValueError, match="layover"):
        simulate_scene(tmp_path / "refused.nitf", replace(STEEP, allow_layover=False))
    assert not (tmp_path / "refused.nitf").exists()
    path = tmp_path / "steep.nitf"
    truth = simulate_scene(path, STEEP)
    over = [t for t in truth["targets"] if t["layover"]]
    assert truth["layover_targets"] == len(over) >= 1
    assert all(t["intersections"] >= 2 for t in over)
    assert "lowest-HAE" in truth["target_choice"]
    terrain = terrain_from_dict(truth["terrain"])
    xml = _sicd(path).to_xml_string(tag="SICD", check_validity=False)
    from sarkit.wgs84 import cartesian_to_geodetic

    for t in over:
        hits = project_to_terrain(xml, terrain, [(t["row"], t["col"])], 0.0, 600.0)[0]
        assert len(hits) == t["intersections"]
        haes = cartesian_to_geodetic(hits)[:, 2]
        assert t["llh"][2] == pytest.approx(haes.min(), abs=1e-3)
    ecf = np.array([t["ecf"] for t in over])
    got, _, _ = ground_to_image(ecf, _sicd(path), tolerance=1e-5, max_iterations=50)
    assert np.abs(got - [[t["row"], t["col"]] for t in over]).max() < 0.01


def test_an_orthometric_dem_declares_egm2008(hilly, tmp_path):
    path, truth = hilly
    terrain = terrain_from_dict(truth["terrain"])
    lat, lon, hae = dem_grid(terrain, truth["dem"])

    def undulation(la, lo):
        return 44.0 + 2.0 * (la - lat.mean()) - 1.0 * (lo - lon.mean())

    out = tmp_path / "orthometric.tif"
    write_dem_geotiff(out, lat, lon, hae, crs=ORTHOMETRIC_CRS, undulation=undulation)
    crs, heights, glat, glon = _dem(out)
    assert crs.to_epsg() == 9518
    want = terrain_height(terrain, glat, glon) - undulation(glat, glon)
    np.testing.assert_allclose(heights, want, rtol=0, atol=1e-4)
    with pytest.raises(ValueError, match="vertical"):
        write_dem_geotiff(out, lat, lon, hae, undulation=undulation)


def test_the_optical_ground_is_hill_shaded_with_markers_on_the_targets(hilly, tmp_path):
    import io

    from PIL import Image

    from sarlo_dask.optical.tilemath import TILE_PX, global_pixel
    from sarlo_dask.sim.optical import render_ground_tile, simulate_optical_tiles

    def png(data: bytes) -> np.ndarray:
        return np.asarray(Image.open(io.BytesIO(data)))

    _, truth = hilly
    terrain = terrain_from_dict(truth["terrain"])
    simulate_optical_tiles(tmp_path, truth, zoom=19, margin_deg=2e-4)
    for t in truth["targets"]:
        gx, gy = global_pixel(np.array([t["llh"][1]]), np.array([t["llh"][0]]), 19)
        x, y = int(gx[0] // TILE_PX), int(gy[0] // TILE_PX)
        tile = np.asarray(Image.open(tmp_path / "19" / str(x) / f"{y}.png"))
        assert tuple(tile[int(gy[0] % TILE_PX), int(gx[0] % TILE_PX)]) == (255, 0, 0)
        shaded = render_ground_tile(19, x, y, [], terrain)
        assert shaded == render_ground_tile(19, x, y, [], terrain)  # deterministic
        grey, plain = png(shaded), png(render_ground_tile(19, x, y, []))
        assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()
        assert (grey != plain).any()


def test_sarlo_simulate_relief_writes_the_dem(tmp_path):
    out = tmp_path / "cli.nitf"
    args = [sys.executable, "-m", "sarlo_dask.cli", "simulate", str(out), "--rows", "256"]
    args += ["--cols", "256", "--spacing", "1.0", "--targets", "3", "--relief", "40"]
    res = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "40 m of relief" in res.stdout and Path(str(out) + ".dem.tif").exists()
    truth = json.loads(Path(str(out) + ".truth.json").read_text())
    assert truth["spec"]["relief_m"] == 40.0 and len(truth["targets"]) == 3
    res = subprocess.run(
        [*args[:4], str(tmp_path / "like.nitf"), "--like", str(out), "--relief", "40"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 2 and "--relief" in res.stderr
