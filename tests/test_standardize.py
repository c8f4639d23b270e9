"""The scene stage's acceptance: target positions, the ideal reference, deskew, geolocation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sarpy.geometry.point_projection import ground_to_image

from sarlo_dask.config import StandardizeConfig
from sarlo_dask.geometry.geolocation import (
    geolocate_tie_points,
    llh_to_ecf,
    project_pixels,
    tie_point_step,
)
from sarlo_dask.geometry.resample import plan_axis
from sarlo_dask.geometry.resampled import resampled_sicd
from sarlo_dask.geometry.sicd import open_sicd, read_sicd_meta, sicd_from_xml
from sarlo_dask.pipeline import standardize_scenes
from sarlo_dask.sim.scene import SimulationSpec
from sarlo_dask.sim.sicd import build_sicd
from sarlo_dask.stages.standardize import open_scene_store, standardize_scene
from sarlo_dask.store import scene_store_url

from .helpers import correlation, deskew, ideal_reference, interior, peak

CFG = StandardizeConfig(min_size=64, chunk_azimuth=256, chunk_range=256, store_chunk=128)
CASE_NAMES = ["fine", "fine_skew", "coarse", "coarse_skew"]


@pytest.fixture(scope="module")
def stores(scenes, client, tmp_path_factory):
    work = str(tmp_path_factory.mktemp("work"))
    results = standardize_scenes([str(p) for p in scenes.values()], work, CFG, client)
    assert [r.status for r in results] == ["done"] * len(scenes), [r.line() for r in results]
    return {name: open_scene_store(scene_store_url(work, name)) for name in scenes}


def _truth(path):
    return json.loads(open(str(path) + ".truth.json").read())


def _source_rc(path):
    """The input pixels as sarpy reads them: (rows = range, cols = azimuth)."""
    return open_sicd(str(path)).slc.values.T


@pytest.mark.parametrize("case", CASE_NAMES)
def test_targets_sit_where_sarpy_projects_them(stores, scenes, case):
    ds = stores[case]
    sicd = sicd_from_xml(ds.attrs["sicd_xml"])
    slc = ds.slc.values
    targets = _truth(scenes[case])["targets"]
    assert len(targets) == 9
    for t in targets:
        (row, col), _, _ = ground_to_image(np.array(t["ecf"]), sicd, tolerance=1e-6)
        a, r = peak(slc, col, row)
        assert abs(a - col) <= 0.1 and abs(r - row) <= 0.1, (case, t, a - col, r - row)


@pytest.mark.parametrize("case", CASE_NAMES)
def test_output_matches_the_ideal_band_limited_reference(stores, scenes, case):
    ds = stores[case]
    sicd_in = read_sicd_meta(str(scenes[case]))
    sicd_out = sicd_from_xml(ds.attrs["sicd_xml"])
    ref = ideal_reference(_source_rc(scenes[case]), sicd_in, sicd_out)
    got = deskew(ds.slc.values.T.astype(complex), sicd_out)
    assert got.shape == ref.shape
    assert correlation(interior(got), interior(ref)) >= 0.999


@pytest.mark.parametrize("case", ["fine_skew", "coarse_skew"])
def test_without_deskew_a_skewed_spectrum_loses_correlation(scenes, client, case):
    sicd_in = read_sicd_meta(str(scenes[case]))
    src = _source_rc(scenes[case])
    scores = {}
    for on in (True, False):
        out = standardize_scene(
            open_sicd(str(scenes[case]), 256), CFG.model_copy(update={"deskew": on})
        ).compute()
        sicd_out = sicd_from_xml(out.attrs["sicd_xml"])
        ref = ideal_reference(src, sicd_in, sicd_out)
        got = deskew(out.slc.values.T.astype(complex), sicd_out)
        scores[on] = correlation(interior(got), interior(ref))
    assert scores[True] >= 0.999
    assert scores[False] < 0.98, scores


def test_written_sicd_is_valid_and_self_consistent(stores):
    ds = stores["fine_skew"]
    sicd = sicd_from_xml(ds.attrs["sicd_xml"])
    assert sicd.is_valid(recursive=True, stack=False)
    assert (sicd.ImageData.NumRows, sicd.ImageData.NumCols) == (
        ds.sizes["range"],
        ds.sizes["azimuth"],
    )
    assert np.isclose(sicd.Grid.Row.SS, ds.attrs["spacing_eff_rg"])
    assert abs(sicd.Grid.Row.SS - 0.8) < 0.01 and abs(sicd.Grid.Col.SS - 0.8) < 0.01
    assert sicd.Grid.Col.ImpRespBW <= 1 / sicd.Grid.Col.SS + 1e-9
    assert -0.5 / sicd.Grid.Col.SS <= sicd.Grid.Col.DeltaK1 < sicd.Grid.Col.DeltaK2
    assert not np.any(sicd.Grid.Col.DeltaKCOAPoly.get_array())  # fully deskewed
    assert ds.slc.dtype == np.complex64
    assert ds.attrs["pass_id"] == "SIMSAT-1_20250602T100000"
    src = sicd_from_xml(ds.attrs["source_sicd_xml"])
    assert src.Grid.Row.SS == pytest.approx(0.3)
    assert json.loads(ds.attrs["provenance"])["parameters"]["spacing"] == 0.8


def test_targets_geolocate_to_their_ground_truth(stores, scenes):
    for case in CASE_NAMES:
        ds = stores[case]
        slc = ds.slc.values
        sicd = sicd_from_xml(ds.attrs["sicd_xml"])
        for t in _truth(scenes[case])["targets"]:
            (row, col), _, _ = ground_to_image(np.array(t["ecf"]), sicd, tolerance=1e-6)
            a, r = peak(slc, col, row)
            llh = [float(ds[v].interp(tp_azimuth=a, tp_range=r)) for v in ("lat", "lon", "hae")]
            err = np.linalg.norm(llh_to_ecf(np.array(llh)) - np.array(t["ecf"]))
            assert err <= 0.05, (case, err)


def test_tie_points_meet_their_bound_on_a_2048_output():
    """Interpolated tie points against dense sarpy projection of every pixel."""
    spec = SimulationSpec(rows=5461, cols=5461, row_spacing=0.3, col_spacing=0.3)
    sicd_in = build_sicd(spec)
    plans = [plan_axis(5461, 0.3, 0, 5461 // 2, 0.8) for _ in range(2)]
    sicd = resampled_sicd(sicd_in, plans[0], plans[1], np.zeros((1, 1)), np.zeros((1, 1)))
    assert (sicd.ImageData.NumRows, sicd.ImageData.NumCols) == (2048, 2048)
    choice = tie_point_step(sicd, bound_m=1e-3)
    grid = geolocate_tie_points(sicd, choice.step)
    az = np.arange(2048)
    rows, cols = np.meshgrid(az, az, indexing="xy")  # rows vary along range (last axis)
    dense = project_pixels(sicd, rows, cols)
    interp = grid.interp(tp_azimuth=az, tp_range=az)
    llh = np.stack([interp[v].values.ravel() for v in ("lat", "lon", "hae")], axis=1)
    err = np.linalg.norm(llh_to_ecf(llh) - dense, axis=1)
    assert err.max() <= choice.bound_m, (choice, err.max())
    assert choice.step >= 8
