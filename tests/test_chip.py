"""Each tile's SICD XML describes the tile: checked by sarkit's and sarpy's own validators,
and its corners against sarpy's projection of the tile's corner pixels."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sarlo_dask.geometry.chip import chip_sicd_xml, chip_valid_data, clip_polygon
from sarlo_dask.geometry.sicd import sicd_from_xml

from .helpers import latlon_distance_m, small_scene_config
from .validators import RECIPE_FINDINGS, sarpy_findings, sicdcheck_findings


@pytest.fixture(scope="module")
def store(scenes):
    """The standardized 'fine_skew' scene, computed in this process."""
    import dask

    from sarlo_dask.geometry.sicd import open_sicd
    from sarlo_dask.stages.standardize import standardize_scene

    with dask.config.set(scheduler="synchronous"):
        ds = standardize_scene(open_sicd(str(scenes["fine_skew"]), 256), small_scene_config())
        return ds[["lat", "lon", "hae"]].compute().assign_attrs(ds.attrs)


def _chip(ds, a0: int, r0: int, size: int = 128) -> str:
    from sarlo_dask.geometry.tiles import tile_llh

    crop = {"azimuth": [a0, a0 + size], "range": [r0, r0 + size]}
    return chip_sicd_xml(
        ds.attrs["sicd_xml"],
        crop,
        lambda rows, cols: tile_llh(ds.lat, ds.lon, ds.hae, cols, rows)[:, :2],
    )


def test_the_simulators_scenes_pass_both_validators(scenes):
    """The simulator's own SICDs (with radiometry and their receiver noise declared): sarkit's
    consistency checker and sarpy's is_valid report nothing at all."""
    from sarlo_dask.geometry.sicd import read_sicd_meta

    for name, path in scenes.items():
        xml = read_sicd_meta(str(path)).to_xml_string(tag="SICD")
        assert "<NoiseLevel>" in xml and "<SigmaZeroSFPoly" in xml, name
        assert sicdcheck_findings(xml) == set(), name
        assert sarpy_findings(xml) == set(), name


def test_every_chip_passes_the_validators_and_its_corners_are_its_own(store):
    from sarpy.geometry.point_projection import image_to_ground_geo

    scene_xml = store.attrs["sicd_xml"]
    scene_check, scene_sarpy = sicdcheck_findings(scene_xml), sarpy_findings(scene_xml)
    assert scene_check <= set(RECIPE_FINDINGS), scene_check
    assert scene_sarpy == set(), scene_sarpy
    sicd = sicd_from_xml(scene_xml)
    for a0, r0 in [(0, 0), (128, 0), (0, 200), (250, 250)]:
        xml = _chip(store, a0, r0)
        assert sicdcheck_findings(xml) <= scene_check, (a0, r0)  # adds no finding
        assert sarpy_findings(xml) <= scene_sarpy, (a0, r0)
        chip = sicd_from_xml(xml)
        img = chip.ImageData
        assert (img.FirstRow, img.FirstCol, img.NumRows, img.NumCols) == (r0, a0, 128, 128)
        rows = r0 + np.array([0, 0, 127, 127])
        cols = a0 + np.array([0, 127, 127, 0])
        truth = image_to_ground_geo(np.column_stack([rows, cols]), sicd, projection_type="HAE")
        icp = chip.GeoData.ImageCorners.get_array(dtype="float64")
        assert latlon_distance_m(icp, truth).max() < 0.01  # within 1 cm of the corner pixels
        valid = img.ValidData.get_array(dtype="float64")
        assert valid[:, 0].min() >= r0 and valid[:, 0].max() <= r0 + 127
        assert valid[:, 1].min() >= a0 and valid[:, 1].max() <= a0 + 127
        geo = chip.GeoData.ValidData.get_array(dtype="float64")
        assert geo.shape == valid.shape


_coord = st.integers(0, 60)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(_coord, _coord), min_size=3, max_size=9),
    st.tuples(_coord, _coord, st.integers(1, 40), st.integers(1, 40)),
)
def test_clipping_matches_shapely_on_convex_polygons(points, window):
    """Against brute force: the clipped convex hull's area equals shapely's intersection."""
    shapely = pytest.importorskip("shapely")
    hull = shapely.MultiPoint(points).convex_hull
    if hull.geom_type != "Polygon":
        return
    ring = np.array(hull.exterior.coords)[:-1]
    r0, c0, h, w = window
    rows, cols = (r0, r0 + h), (c0, c0 + w)
    got = clip_polygon(ring, rows, cols)
    box = shapely.box(r0, c0, r0 + h, c0 + w)
    want = hull.intersection(box).area
    area = shapely.Polygon(got).area if len(got) >= 3 else 0.0
    assert area == pytest.approx(want, abs=1e-6)


def test_chip_valid_data_follows_the_sicd_rules():
    scene = [(0, 0), (0, 100), (100, 100), (100, 0)]  # clockwise in (row, col)
    v = chip_valid_data(scene, (50, 149), (20, 119))
    assert v.tolist() == [[50, 20], [50, 100], [100, 100], [100, 20]]
    assert chip_valid_data(None, (0, 9), (0, 9)).tolist() == [[0, 0], [0, 9], [9, 9], [9, 0]]
    diamond = [(0, 50), (50, 100), (100, 50), (50, 0)]
    v = chip_valid_data(diamond, (10, 60), (10, 60))
    assert tuple(v[0]) == (10, 40)  # the first vertex: minimum row, then minimum column
