"""Pixel reads by byte range (sarlo_dask.io.nitf) against sarpy's own SICD reader."""

from __future__ import annotations

import numpy as np
import pytest

from sarlo_dask.geometry.sicd import read_header
from sarlo_dask.io.nitf import read_rows, write_sicd_nitf
from sarlo_dask.sim.scene import SimulationSpec
from sarlo_dask.sim.sicd import build_sicd

from .conftest import SHARED_SICD, needs_shared


def _sarpy_pixels(path) -> np.ndarray:
    from sarpy.io.complex.sicd import SICDReader

    reader = SICDReader(str(path))
    try:
        return np.asarray(reader[:, :], dtype=np.complex64)
    finally:
        reader.close()


def _rows(path, r0: int, r1: int) -> np.ndarray:
    _, layout = read_header(str(path))
    with open(path, "rb") as f:
        return read_rows(f, layout, r0, r1)


@needs_shared
@pytest.mark.parametrize(
    "name", ["cropped_sicd_110.nitf", "cropped_sicd_extra_des.nitf", "sicd_50x50.nitf"]
)
def test_real_files_read_as_sarpy_reads_them(name):
    """RE16I_IM16I (TerraSAR-X) and RE32F_IM32F (RCM), whole and in row blocks."""
    path = SHARED_SICD / name
    want = _sarpy_pixels(path)
    np.testing.assert_array_equal(_rows(path, 0, want.shape[0]), want)
    np.testing.assert_array_equal(_rows(path, 1, 3), want[1:3])


@pytest.mark.parametrize("pixel_type", ["RE16I_IM16I", "AMP8I_PHS8I", "RE32F_IM32F"])
def test_every_pixel_type_reads_as_sarpy_reads_it(pixel_type, tmp_path):
    """Written by sarkit, read by sarpy's SICDReader (the reference) and by byte range."""
    import sarkit.sicd as sksicd

    sicd = build_sicd(SimulationSpec(rows=40, cols=24, row_spacing=0.5, col_spacing=0.5))
    sicd.ImageData.PixelType = pixel_type
    if pixel_type == "AMP8I_PHS8I":
        sicd.ImageData.AmpTable = np.linspace(0.0, 40.0, 256) ** 1.1  # not the identity
    dtype = sksicd.PIXEL_TYPES[pixel_type]["dtype"]
    raw = np.zeros((40, 24), dtype=dtype)
    rng = np.random.default_rng(0)
    for name in dtype.names or ():
        kind = dtype[name]
        raw[name] = (
            rng.integers(0, 256, raw.shape)
            if kind.kind == "u"
            else rng.integers(-3000, 3000, raw.shape)
        )
    if dtype.names is None:
        raw[...] = rng.normal(size=(40, 24)) + 1j * rng.normal(size=(40, 24))
    path = tmp_path / f"{pixel_type}.nitf"
    write_sicd_nitf(path, sicd.to_xml_string(tag="SICD", check_validity=False), raw, "test")
    want = _sarpy_pixels(path)
    got = _rows(path, 0, 40)
    if pixel_type == "AMP8I_PHS8I":  # float32 trigonometry: the two round apart
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
    else:
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(_rows(path, 7, 19), got[7:19])


def test_a_multi_segment_nitf_reads_and_standardizes_as_one_segment(monkeypatch, tmp_path):
    """sarkit splits a SICD over several image segments when it exceeds a segment's 10 GB; its
    writer, told a smaller segment limit, writes the same layout at test size. Pixels read by
    byte range (blocks across segment boundaries) equal sarkit's own reader's, and the store
    equals the one made from a single-segment file of the same pixels."""
    import dask
    import sarkit.sicd as sksicd
    import sarkit.sicd._constants as skconst

    from sarlo_dask.geometry.sicd import open_sicd
    from sarlo_dask.sim.scene import simulate_scene
    from sarlo_dask.stages.standardize import standardize_scene

    from .helpers import small_scene_config

    one = tmp_path / "one.nitf"
    simulate_scene(one, SimulationSpec(rows=600, cols=512, seed=5))
    sicd, layout = read_header(str(one))
    xml = sicd.to_xml_string(tag="SICD", check_validity=False)
    whole = _rows(one, 0, 600)
    assert len(layout.segments) == 1
    monkeypatch.setattr(skconst, "IS_SIZE_MAX", 250 * 512 * 8)  # 250 rows a segment
    many = tmp_path / "many.nitf"
    write_sicd_nitf(many, xml, whole, "test")
    monkeypatch.undo()

    _, layout = read_header(str(many))
    assert [(s.row0, s.row1) for s in layout.segments] == [(0, 250), (250, 500), (500, 600)]
    with open(many, "rb") as f, sksicd.NitfReader(f) as reader:
        np.testing.assert_array_equal(reader.read_image(), whole)
    np.testing.assert_array_equal(_rows(many, 0, 600), whole)
    np.testing.assert_array_equal(_rows(many, 240, 510), whole[240:510])  # three segments
    np.testing.assert_array_equal(_sarpy_pixels(many), whole)

    cfg = small_scene_config()
    with dask.config.set(scheduler="synchronous"):
        a = standardize_scene(open_sicd(str(one), 128), cfg).compute()
        b = standardize_scene(open_sicd(str(many), 128), cfg).compute()
    np.testing.assert_array_equal(a.slc.values, b.slc.values)
    assert a.attrs["sicd_xml"] == b.attrs["sicd_xml"]
