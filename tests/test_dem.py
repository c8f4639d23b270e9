"""DEMs as they come (files, folders, S3, vertical datums) and pixels projected onto them,
judged by independent references: sarkit's own scalar DEM projection, the simulator's analytic
terrain (its targets placed by sarkit), sarpy's ground_to_image, brute-force ray tracing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sarlo_dask.config import StandardizeConfig
from sarlo_dask.geometry.dem import DemError, DemGrid, read_dem, scene_dem
from sarlo_dask.geometry.geolocation import LAYOVER, SHADOW, ecf_to_llh, project_pixels
from sarlo_dask.geometry.terrain import project_to_dem
from sarlo_dask.sim.scene import SimulationSpec, simulate_scene
from sarlo_dask.sim.terrain import (
    ORTHOMETRIC_CRS,
    dem_grid,
    terrain_from_dict,
    terrain_height,
    write_dem_geotiff,
)

from .helpers import STEEP as STEEP_SETTINGS
from .helpers import terrain_spec

HILLY = terrain_spec(seed=3, n_targets=30)
STEEP = terrain_spec(**STEEP_SETTINGS)


def _scene(tmp_path_factory: pytest.TempPathFactory, name: str, spec: SimulationSpec):
    path = tmp_path_factory.mktemp(name) / f"{name}.nitf"
    truth = simulate_scene(path, spec)
    return path, truth, Path(str(path) + ".dem.tif")


@pytest.fixture(scope="module")
def hilly(tmp_path_factory):
    return _scene(tmp_path_factory, "hilly", HILLY)


@pytest.fixture(scope="module")
def steep(tmp_path_factory):
    return _scene(tmp_path_factory, "steep", STEEP)


def _xml(path: Path) -> str:
    from sarlo_dask.geometry.sicd import read_header

    sicd, _ = read_header(str(path))
    return sicd.to_xml_string(tag="SICD")


def _sarkit_dem_projection(xml: str, rows, cols, dem: DemGrid) -> list[np.ndarray]:
    """sarkit's scalar SICD Vol. 3 projection to a DEM surface, one pixel per call."""
    import sarkit.sicd as sksicd
    import sarkit.sicd.projection as proj
    import sarkit.wgs84
    from lxml import etree

    tree = etree.ElementTree(etree.fromstring(xml.encode()))
    params = proj.MetadataParams.from_xml(tree)
    lo, hi = dem.hae_range()

    def above(ecf: np.ndarray) -> np.ndarray:
        llh = sarkit.wgs84.cartesian_to_geodetic(ecf)
        return llh[..., 2] - dem.height(llh[..., 0], llh[..., 1])

    out = []
    for r, c in zip(rows, cols, strict=True):
        xy = sksicd.rowcol_to_xrowycol(tree, np.array([[r, c]], dtype="float64"))
        sets = proj.compute_projection_sets(params, xy[0])
        out.append(
            np.atleast_2d(
                proj.r_rdot_to_dem_surface(
                    params.LOOK, params.SCP, sets, above, lo - 1, hi + 1, dem.spacing_m() / 4
                )
            )
        )
    return out


def test_projection_onto_the_dem_is_sarkits_and_the_simulators(hilly):
    path, truth, dem_path = hilly
    xml = _xml(path)
    dem = scene_dem(str(dem_path), xml)
    lo, hi = dem.hae_range()
    assert hi - lo >= 60.0, "at least 60 m of relief under the scene"
    rng = np.random.default_rng(0)
    rows, cols = rng.uniform(0, 511, 40), rng.uniform(0, 511, 40)
    ours = project_to_dem(xml, rows, cols, dem)
    assert not (ours.flags & LAYOVER).any()
    reference = _sarkit_dem_projection(xml, rows, cols, dem)
    assert all(len(r) == 1 for r in reference)
    gap = np.linalg.norm(ours.ecf - np.concatenate(reference), axis=1)
    assert gap.max() < 3e-3, gap.max()  # both stop within a millimetre of the surface
    # the targets, placed by sarkit on the analytic terrain (the DEM samples it at 2 m)
    px = np.array([[t["row"], t["col"]] for t in truth["targets"]])
    at = project_to_dem(xml, px[:, 0], px[:, 1], dem)
    gap = np.linalg.norm(at.ecf - np.array([t["ecf"] for t in truth["targets"]]), axis=1)
    assert gap.max() < 0.02, gap.max()
    flat = project_pixels(xml, px[:, 0], px[:, 1])
    moved = np.linalg.norm(flat - np.array([t["ecf"] for t in truth["targets"]]), axis=1)
    assert moved.max() > 20.0  # a constant height puts them tens of metres off


def test_layover_is_where_sarkit_finds_several_crossings(steep):
    path, truth, dem_path = steep
    xml = _xml(path)
    dem = scene_dem(str(dem_path), xml)
    px = np.array([[t["row"], t["col"]] for t in truth["targets"]])
    ours = project_to_dem(xml, px[:, 0], px[:, 1], dem)
    several = np.array([t["intersections"] > 1 for t in truth["targets"]])
    assert several.any() and (~several).any(), "the scene has both"
    np.testing.assert_array_equal((ours.flags & LAYOVER) > 0, several)
    # the lowest of the crossings, as sarkit orders them
    gap = np.linalg.norm(ours.ecf - np.array([t["ecf"] for t in truth["targets"]]), axis=1)
    assert gap.max() < 0.05, gap.max()


def _ridge(xml: str) -> DemGrid:
    """A flat DEM at the SCP height with a 60 m wall-like ridge across the range direction."""
    from sarlo_dask.geometry.geolocation import scene_size

    n_rows, n_cols, h0 = scene_size(xml)
    corners = ecf_to_llh(project_pixels(xml, np.array([0, n_rows - 1]), np.array([0, 0])))
    lat0, lon0 = corners.mean(axis=0)[:2]
    d = 1.0 / 111_320.0
    lat = lat0 + d * np.arange(700, -700, -1)
    lon = lon0 + d / np.cos(np.radians(lat0)) * np.arange(-700, 700)
    along = (corners[1, 1] - corners[0, 1]) * np.cos(np.radians(lat0))
    across = corners[1, 0] - corners[0, 0]  # the range direction on the ground, degrees
    u = np.array([across, along]) / np.hypot(across, along)
    s = (lat[:, None] - lat0) * u[0] + (lon[None, :] - lon0) * np.cos(np.radians(lat0)) * u[1]
    s = s * 111_320.0  # metres along the ground range from the middle
    heights = h0 + 60.0 * np.exp(-((s / 6.0) ** 2))
    return DemGrid(heights, lat[0], lon[0], -d, d / np.cos(np.radians(lat0)), "ridge")


def test_shadow_is_what_a_fine_ray_trace_finds(hilly):
    from sarkit.wgs84 import cartesian_to_geodetic

    path, _, _ = hilly
    xml = _xml(path)
    dem = _ridge(xml)
    rows = np.linspace(0, 511, 160)
    cols = np.full_like(rows, 256.0)
    ours = project_to_dem(xml, rows, cols, dem)
    shadow = (ours.flags & SHADOW) > 0
    assert shadow.sum() >= 5 and (~shadow).sum() >= 5
    from sarlo_dask.geometry.geolocation import projection_sets

    _, sets = projection_sets(xml, rows, cols)
    brute = np.zeros(len(rows), dtype=bool)
    for i, (g, arp) in enumerate(zip(ours.ecf, sets.ARP_COA, strict=True)):
        u = (arp - g) / np.linalg.norm(arp - g)
        s = np.arange(0.05, 300.0, 0.05)
        llh = cartesian_to_geodetic(g + s[:, None] * u)
        brute[i] = bool((dem.height(llh[:, 0], llh[:, 1]) - llh[:, 2] > 0.01).any())
    assert (shadow != brute).sum() <= 2, np.flatnonzero(shadow != brute)


def test_dem_files_folders_vrts_and_s3_give_the_same_window(hilly, tmp_path, s3):
    import rasterio
    import s3fs
    from rasterio.windows import Window

    path, _, dem_path = hilly
    xml = _xml(path)
    whole = scene_dem(str(dem_path), xml)
    with rasterio.open(dem_path) as src:  # the window's pixels are the file's, never resampled
        row, col = src.index(whole.lon0, whole.lat0)
        h, w = whole.heights.shape
        inside = src.read(1, window=Window(col, row, w, h), boundless=True, fill_value=np.nan)
        profile, data, half = src.profile, src.read(1), src.width // 2
        transform = src.transform
    np.testing.assert_array_equal(whole.heights[np.isfinite(inside)], inside[np.isfinite(inside)])
    # on the file's own pixel grid: whole pixels from its origin, never a fraction of one
    at = ((whole.lat0 - (transform.f + transform.e / 2)) / transform.e,)
    at += ((whole.lon0 - (transform.c + transform.a / 2)) / transform.a,)
    assert np.allclose(at, np.round(at), atol=1e-6), at
    folder = tmp_path / "tiles"
    folder.mkdir()
    for name, sl, t in (
        ("west.tif", np.s_[:, :half], transform),
        ("east.tif", np.s_[:, half:], transform * rasterio.Affine.translation(half, 0)),
    ):
        part = data[sl]
        prof = dict(profile, width=part.shape[1], height=part.shape[0], transform=t)
        with rasterio.open(folder / name, "w", **prof) as dst:
            dst.write(part[None])
    tiled = scene_dem(str(folder), xml)
    np.testing.assert_array_equal(tiled.heights, whole.heights)
    height, width = data.shape
    sources = "".join(
        f'<SimpleSource><SourceFilename relativeToVRT="1">tiles/{name}</SourceFilename>'
        f'<SourceBand>1</SourceBand><SrcRect xOff="0" yOff="0" xSize="{w}" ySize="{height}"/>'
        f'<DstRect xOff="{x0}" yOff="0" xSize="{w}" ySize="{height}"/></SimpleSource>'
        for name, x0, w in (("west.tif", 0, half), ("east.tif", half, width - half))
    )
    t = transform
    (tmp_path / "dem.vrt").write_text(
        f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">'
        f"<SRS>{profile['crs'].to_wkt()}</SRS>"
        f"<GeoTransform>{t.c!r}, {t.a!r}, 0, {t.f!r}, 0, {t.e!r}</GeoTransform>"
        f'<VRTRasterBand dataType="Float32" band="1">{sources}</VRTRasterBand></VRTDataset>'
    )
    vrt = scene_dem(str(tmp_path / "dem.vrt"), xml)
    np.testing.assert_array_equal(vrt.heights, whole.heights)
    s3fs.S3FileSystem(**s3).put(str(dem_path), "sarlo/dem/hilly.tif")
    remote = scene_dem("s3://sarlo/dem/hilly.tif", xml, storage_options=s3)
    np.testing.assert_array_equal(remote.heights, whole.heights)
    assert remote.name == "s3://sarlo/dem/hilly.tif"


def _geoid_grid(path: Path, lat0: float, lon0: float) -> None:
    """A geoid undulation grid PROJ can read: N = 40 m + 10 m per degree of latitude."""
    import rasterio
    from rasterio.transform import from_origin

    lat = lat0 + 1.0 - 0.01 * (np.arange(200) + 0.5)
    n = np.repeat((40.0 + 10.0 * (lat - lat0))[:, None], 200, axis=1).astype("float32")
    with rasterio.open(
        path, "w", driver="GTiff", width=200, height=200, count=1, dtype="float32",
        crs="EPSG:4326", transform=from_origin(lon0 - 1.0, lat0 + 1.0, 0.01, 0.01),
    ) as dst:  # fmt: skip
        dst.write(n[None])


def test_orthometric_heights_become_hae_or_are_refused(hilly, tmp_path):
    import pyproj

    path, truth, _ = hilly
    xml = _xml(path)
    terrain = terrain_from_dict(truth["terrain"])
    lat, lon, hae = dem_grid(terrain, truth["dem"])
    lat0, lon0 = truth["spec"]["lat"], truth["spec"]["lon"]

    def undulation(la, lo):
        return 40.0 + 10.0 * (la - lat0)

    ortho = tmp_path / "ortho.tif"
    write_dem_geotiff(ortho, lat, lon, hae, crs=ORTHOMETRIC_CRS, undulation=undulation)
    with pytest.raises(DemError, match="us_nga_egm08_25.tif") as no_grid:
        scene_dem(str(ortho), xml)
    assert "\n" not in str(no_grid.value)
    grid = tmp_path / "geoid.tif"
    _geoid_grid(grid, lat0, lon0)
    named = scene_dem(str(ortho), xml, vertical_datum=str(grid))
    original = pyproj.datadir.get_data_dir()
    (tmp_path / "proj").mkdir()
    grid.rename(tmp_path / "proj" / "us_nga_egm08_25.tif")
    pyproj.datadir.append_data_dir(str(tmp_path / "proj"))
    try:
        declared = scene_dem(str(ortho), xml)  # EPSG:4326+3855 through PROJ's EGM2008 grid
    finally:
        pyproj.datadir.set_data_dir(original)
    for got in (named, declared):
        la = got.lat0 + got.dlat * np.arange(got.heights.shape[0])
        lo = got.lon0 + got.dlon * np.arange(got.heights.shape[1])
        want = terrain_height(terrain, la[:, None], lo[None, :])
        ok = np.isfinite(got.heights)
        assert ok.sum() > 10_000
        np.testing.assert_allclose(got.heights[ok], want[ok], atol=2e-3)  # float32 heights
    plain = tmp_path / "plain.tif"
    write_dem_geotiff(plain, lat, lon, hae, crs="EPSG:4326")
    with pytest.raises(DemError, match="dem_vertical_datum") as undeclared:
        read_dem(str(plain), (lon0 - 0.001, lat0 - 0.001, lon0 + 0.001, lat0 + 0.001))
    assert "\n" not in str(undeclared.value)
    as_hae = scene_dem(str(plain), xml, vertical_datum="hae")
    assert np.nanmax(np.abs(as_hae.height(lat0, lon0) - terrain_height(terrain, lat0, lon0))) < 1e-3


def test_a_scene_the_dem_does_not_cover_fails_alone(hilly, client, tmp_path):
    from sarlo_dask.pipeline import standardize_scenes

    _, _, dem_path = hilly
    far = tmp_path / "far.nitf"
    simulate_scene(far, SimulationSpec(rows=256, cols=256, lat=45.0, lon=5.0, n_targets=0))
    cfg = StandardizeConfig(min_size=64, dem=str(dem_path))
    results = standardize_scenes([str(hilly[0]), str(far)], str(tmp_path / "work"), cfg, client)
    by = {Path(r.url).stem: r for r in results}
    assert by["hilly"].status == "done", by["hilly"].reason
    assert by["far"].status == "failed"
    assert "does not cover the scene" in by["far"].reason, by["far"].reason
    assert "\n" not in by["far"].reason and str(dem_path) in by["far"].reason


def test_the_cli_refuses_an_unusable_dem_before_any_work(hilly, tmp_path):
    import subprocess
    import sys

    path, truth, _ = hilly
    lat, lon, hae = dem_grid(terrain_from_dict(truth["terrain"]), truth["dem"])
    plain = tmp_path / "plain.tif"
    write_dem_geotiff(plain, lat, lon, hae, crs="EPSG:4326")
    nad83 = tmp_path / "nad83.tif"
    write_dem_geotiff(nad83, lat, lon, hae, crs="EPSG:4269")
    (tmp_path / "text.tif").write_text("not a raster")
    sarlo = str(Path(sys.executable).parent / "sarlo")
    for dem, why in (
        (tmp_path / "none.tif", "no such file or folder"),
        (tmp_path / "text.tif", "not readable as a raster"),
        (plain, "does not say what its heights are measured from"),
        (nad83, "its horizontal datum is not WGS 84"),
    ):
        work = tmp_path / f"work-{dem.stem}"
        res = subprocess.run(
            [sarlo, "standardize", str(path), "--work", str(work), "--dem", str(dem)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert res.returncode == 2, res.stderr
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: DEM ") and why in lines[0], lines
        assert not work.exists() or not any(work.rglob("*.zarr"))  # nothing was made


def test_a_scene_with_layover_is_projected_whole(steep, client, tmp_path):
    from sarlo_dask.pipeline import standardize_scenes

    path, _, dem_path = steep
    xml = _xml(path)
    dem = scene_dem(str(dem_path), xml)
    r, c = (g.ravel() for g in np.meshgrid(np.linspace(0, 511, 100), np.linspace(0, 511, 100)))
    dense = project_to_dem(xml, r, c, dem)  # every pixel, 400 m of relief: none left out
    layover = (dense.flags & LAYOVER) > 0
    assert 0.0 < layover.mean() < 0.2, layover.mean()
    # where sarkit's own projection finds several crossings, so do we; we take its lowest
    rng = np.random.default_rng(2)
    pick = np.concatenate(
        [rng.choice(np.flatnonzero(layover), 15), rng.choice(np.flatnonzero(~layover), 15)]
    )
    reference = _sarkit_dem_projection(xml, r[pick], c[pick], dem)
    several = np.array([len(x) > 1 for x in reference])
    assert (several == layover[pick]).sum() >= 28, np.c_[several, layover[pick]]
    gap = [np.linalg.norm(dense.ecf[i] - x[0]) for i, x in zip(pick, reference, strict=True)]
    assert max(gap) < 0.05, gap
    res = standardize_scenes(
        [str(path)],
        str(tmp_path / "work"),
        StandardizeConfig(min_size=64, dem=str(dem_path)),
        client,
    )[0]
    assert res.status == "done", res.reason
    from sarlo_dask.stages.standardize import open_scene_store

    flags = open_scene_store(res.store).terrain_flags.values
    assert ((flags & LAYOVER) > 0).any()


def _held_grid(dem_url: str, xml: str) -> tuple[float, int, list[int]]:
    """On a worker: the scene's DEM grid through the raster height source (mean height), the
    held DEM it was read through (its id: the table's last used) and the ids the worker's
    table holds after it."""
    from sarlo_dask.driver.worker_state import worker_state
    from sarlo_dask.geometry.heights import RasterDEM
    from sarlo_dask.geometry.sicd import sicd_from_xml

    grid = RasterDEM(dem_url).scene_grid(sicd_from_xml(xml))
    held = [id(v) for v in worker_state().tables["dem"].values()]
    return float(np.nanmean(grid.heights)), held[-1], held


def test_a_worker_holds_the_dem_open_between_scenes_and_never_reads_a_changed_one(
    hilly, client, tmp_path
):
    """Per-worker set-up: the DEM's files are opened once per worker and its scenes read
    through the same handles; a DEM file changed on disk is opened anew (its version is in
    the key), never read through the old handle; the worker keeps at most two (other tests'
    DEMs may be held already: only what this test does is counted)."""
    import shutil

    import rasterio

    from sarlo_dask.driver.worker_state import WorkerState

    path, _, dem_path = hilly
    dem = tmp_path / "dem.tif"
    shutil.copy(dem_path, dem)
    xml = _xml(path)
    client.register_plugin(WorkerState())  # as a tile run does; idempotent
    worker = next(iter(client.scheduler_info()["workers"]))

    def on_worker(url):
        return client.submit(_held_grid, str(url), xml, workers=[worker], pure=False).result()

    before, again = on_worker(dem), on_worker(dem)
    assert again[0] == before[0] and again[1] == before[1]  # read twice through one handle
    with rasterio.open(dem, "r+") as f:  # the same file, every height 10 m higher
        f.write(f.read(1) + 10, 1)
    changed = on_worker(dem)
    assert changed[0] == pytest.approx(before[0] + 10, abs=1e-3), (changed, before)
    assert changed[1] != before[1]  # a new handle for the changed file
    for i in range(2):  # two other DEMs: the worker holds two at most (the oldest closed)
        other = tmp_path / f"other{i}.tif"
        shutil.copy(dem_path, other)
        got = on_worker(other)
        assert got[0] == pytest.approx(before[0]) and len(got[2]) == 2
