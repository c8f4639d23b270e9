"""The scene stage over many scenes on a 2-process cluster: S3, resume, bad input."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import s3fs

from sarlo_dask.config import StandardizeConfig
from sarlo_dask.driver.outcomes import exit_code
from sarlo_dask.errors import SceneError
from sarlo_dask.geometry.checks import check_sicd
from sarlo_dask.geometry.sicd import read_sicd_meta, sicd_from_xml
from sarlo_dask.pipeline import standardize_scenes
from sarlo_dask.sim.scene import SimulationSpec
from sarlo_dask.sim.sicd import build_sicd
from sarlo_dask.stages.standardize import open_scene_store, plan_scene
from sarlo_dask.store import scene_marker_url, scene_store_url

from .conftest import SHARED_SICD, corpus_id, corpus_params, needs_shared
from .helpers import same_store
from .validators import RECIPE_FINDINGS, sarpy_findings, sicdcheck_findings

CFG = StandardizeConfig(min_size=64, chunk_azimuth=256, chunk_range=256, store_chunk=128)


def test_local_and_s3_give_identical_stores_and_a_rerun_skips(scenes, client, s3, tmp_path):
    fs = s3fs.S3FileSystem(**s3)
    fs.put(str(scenes["fine_skew"]), "sarlo/in/fine_skew.nitf")
    cfg_s3 = CFG.model_copy(update={"storage_options": s3})
    local_work, s3_work = str(tmp_path / "work"), "s3://sarlo/work"

    first_local = standardize_scenes([str(scenes["fine_skew"])], local_work, CFG, client)
    first_s3 = standardize_scenes(["s3://sarlo/in/fine_skew.nitf"], s3_work, cfg_s3, client)
    assert [r.status for r in first_local + first_s3] == ["done", "done"]
    assert fs.exists("sarlo/work/scenes/fine_skew.done.json")

    local = open_scene_store(scene_store_url(local_work, "fine_skew"))
    remote = open_scene_store(scene_store_url(s3_work, "fine_skew"), s3)
    same_store(local, remote)

    again_local = standardize_scenes([str(scenes["fine_skew"])], local_work, CFG, client)
    again_s3 = standardize_scenes(["s3://sarlo/in/fine_skew.nitf"], s3_work, cfg_s3, client)
    assert [r.status for r in again_local + again_s3] == ["skipped", "skipped"]


def test_a_rerun_replaces_a_store_left_without_its_marker(scenes, client, tmp_path):
    work = str(tmp_path / "work")
    url = str(scenes["coarse"])
    assert standardize_scenes([url], work, CFG, client)[0].status == "done"
    reference = open_scene_store(scene_store_url(work, "coarse")).load()
    Path(scene_marker_url(work, "coarse")).unlink()  # as if killed before the marker
    chunk = next(Path(scene_store_url(work, "coarse"), "slc", "c").rglob("*"))
    while chunk.is_dir():
        chunk = next(chunk.iterdir())
    chunk.write_bytes(b"partial")
    assert standardize_scenes([url], work, CFG, client)[0].status == "done"
    same_store(reference, open_scene_store(scene_store_url(work, "coarse")))


def _write_bad_inputs(folder: Path, good: Path) -> dict[str, str]:
    """Bad files and the words their refusal must contain."""
    folder.mkdir()
    data = good.read_bytes()
    (folder / "empty.nitf").write_bytes(b"")
    (folder / "text.nitf").write_text("this is not a NITF file\n" * 20)
    (folder / "trunc_header.nitf").write_bytes(data[:1500])
    (folder / "trunc_pixels.nitf").write_bytes(data[: len(data) * 2 // 3])
    patched = data.replace(
        b"<PixelType>RE32F_IM32F</PixelType>", b"<PixelType>RE64F_IM64F</PixelType>"
    )
    assert patched != data
    (folder / "pixeltype.nitf").write_bytes(patched)
    shutil.copy(SHARED_SICD / "sicd_50x50.nitf", folder / "coarse_rcm.nitf")
    shutil.copy(SHARED_SICD / "sicd_0.4.1.nitf", folder / "degenerate.nitf")
    shutil.copy(SHARED_SICD / "cropped_sicd_120.nitf", folder / "tiny.nitf")
    return {
        "empty": "empty file",
        "text": "not a readable SICD NITF",
        "trunc_header": "truncated NITF",
        "trunc_pixels": "truncated NITF",
        "pixeltype": "PixelType",
        "coarse_rcm": "outside the selection range",
        "degenerate": "degenerate metadata",
        "tiny": "smaller than one tile",
    }


@needs_shared
def test_bad_inputs_are_refused_with_reasons_and_the_others_finish(scenes, client, tmp_path):
    expected = _write_bad_inputs(tmp_path / "bad", scenes["fine"])
    cfg = CFG.model_copy(update={"min_size": 128})
    urls = [str(tmp_path / "bad" / f"{n}.nitf") for n in expected] + [str(scenes["fine"])]
    results = {r.scene_id: r for r in standardize_scenes(urls, str(tmp_path / "w"), cfg, client)}
    assert results["fine"].status == "done"
    for name, words in expected.items():
        r = results[name]
        assert r.status == "failed" and words in r.reason, (name, r.reason)
        assert "\n" not in r.line() and r.url in r.line()
    assert exit_code(list(results.values())) == 3


def test_duplicate_scene_ids_are_refused(scenes, client, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    shutil.copy(scenes["coarse"], tmp_path / "a" / "x.nitf")
    shutil.copy(scenes["coarse"], tmp_path / "b" / "x.nitf")
    res = standardize_scenes(
        [str(tmp_path / d / "x.nitf") for d in "ab"], str(tmp_path / "w"), CFG, client
    )
    assert [r.status for r in res] == ["done", "failed"]
    assert "duplicate scene id" in res[1].reason


@needs_shared
@pytest.mark.parametrize(
    "path", corpus_params(sorted(SHARED_SICD.glob("*.nitf")), SHARED_SICD), ids=corpus_id
)
def test_each_shared_sicd_standardizes_or_is_refused_with_a_reason(path, client, tmp_path):
    res = standardize_scenes([str(path)], str(tmp_path), StandardizeConfig(), client)[0]
    assert res.status == "failed"  # all are far smaller than a 1024 px tile, or degenerate
    assert res.reason and "\n" not in res.reason and res.url == str(path)
    # every real file is read by its SICD segment and reaches the rule that refuses it
    # (cropped_sicd_extra_des.nitf: extra non-XML segments labelled XML beside the SICD)
    assert SHARED_REASONS[path.name] in res.reason, res.reason


SHARED_REASONS = {
    **{f"cropped_sicd_{v}.nitf": "smaller than one tile" for v in ("050", "100", "101", "110")},
    "cropped_sicd_120.nitf": "smaller than one tile",
    # SICD 0.4.0: sarpy reads its INCA block without what projection needs; 0.4.1 projects
    "cropped_sicd_040.nitf": "cannot geolocate",
    "cropped_sicd_041.nitf": "smaller than one tile",
    "cropped_sicd_extra_des.nitf": "smaller than one tile",
    "sicd_50x50.nitf": "outside the selection range",
    "sicd_French_xml.nitf": "outside the selection range",
    "sicd_0.4.1.nitf": "degenerate metadata",
    "sicd_1.1.0.nitf": "degenerate metadata",
}


def test_scenes_are_selected_by_native_resolution_unless_spacing_is_asked_for():
    """The recipe's 20 cm-2 m is a resolution (Grid ImpRespWid): 1.8 m samples of a 2.67 m
    resolution pass a spacing selection and not the default one; each line says which."""
    sicd = build_sicd(SimulationSpec(rows=64, cols=64, row_spacing=1.8, col_spacing=1.8))
    default = StandardizeConfig()
    assert default.native_selection() == ("resolution", 0.2, 2.0)
    with pytest.raises(SceneError, match=re.escape(
        "x.nitf: native row (range) resolution 2.672 m is outside the selection range "
        "0.2-2.0 m (select_by: resolution, Grid ImpRespWid)"
    )):  # fmt: skip
        plan_scene(sicd, default, "x.nitf")
    by_spacing = StandardizeConfig(select_by="spacing", min_size=1)
    assert by_spacing.native_selection() == ("spacing", 0.2, 2.0)
    plan_scene(sicd, by_spacing, "x.nitf")
    with pytest.raises(
        SceneError, match=r"spacing 1\.800 m is outside .* \(select_by: spacing, Grid SS\)"
    ):
        plan_scene(sicd, StandardizeConfig(select_by="spacing", max_spacing=1.5), "x.nitf")
    with pytest.raises(ValueError, match="min_resolution 3.0 > max_resolution 2.0"):
        StandardizeConfig(min_resolution=3.0)


def test_unsupported_image_formation_is_refused():
    sicd = build_sicd(SimulationSpec(rows=64, cols=64))
    check_sicd(sicd, "ok", 0.2, 2.0)
    bad = sicd.copy()
    bad.ImageFormation.ImageFormAlgo = "OTHER"  # a PFA block on an RGAZIM grid
    with pytest.raises(SceneError, match="OTHER on an RGAZIM grid: SICD projects RGAZIM"):
        check_sicd(bad, "x.nitf", 0.2, 2.0)


@needs_shared
def test_real_rma_scenes_standardize_when_small_scenes_are_allowed(client, tmp_path):
    """Real TSX geometry with a 3x3 Col.DeltaKCOAPoly and RE16I pixels runs through."""
    cfg = StandardizeConfig(min_size=1)
    res = standardize_scenes(
        [str(SHARED_SICD / "cropped_sicd_120.nitf")], str(tmp_path), cfg, client
    )[0]
    assert res.status == "done", res.reason
    ds = open_scene_store(res.store)
    assert ds.slc.dtype == np.complex64 and np.all(np.isfinite(ds.slc.values))
    src = read_sicd_meta(str(SHARED_SICD / "cropped_sicd_120.nitf"))
    n_r, n_c = src.ImageData.NumRows, src.ImageData.NumCols
    corners = src.project_image_to_ground_geo(
        np.array([[0, 0], [0, n_c - 1], [n_r - 1, n_c - 1], [n_r - 1, 0]], dtype=float)
    )
    # same ground to within a metre (grids differ: 0.9 x 1.3 m in, 0.8 m out)
    assert np.allclose(
        [float(ds.lat.mean()), float(ds.lon.mean())], corners[:, :2].mean(axis=0), atol=1e-5
    )
    # the store's SICD adds no finding of sarkit's or sarpy's validators to the input's: the
    # deskew zeroed Grid.Col.DeltaKCOAPoly, INCA.DopCentroidPoly followed it
    src_xml, out_xml = src.to_xml_string(tag="SICD"), ds.attrs["sicd_xml"]
    assert sicdcheck_findings(out_xml) <= sicdcheck_findings(src_xml) | set(RECIPE_FINDINGS)
    assert sarpy_findings(out_xml) <= sarpy_findings(src_xml)
    out = sicd_from_xml(out_xml)
    inca = out.RMA.INCA
    assert inca.DopCentroidCOA and np.allclose(
        inca.DopCentroidPoly.get_array() * inca.TimeCAPoly.get_array()[1],
        out.Grid.Col.DeltaKCOAPoly.get_array(),
    )


def test_same_input_gives_the_same_bytes(scenes, client, tmp_path):
    url = str(scenes["coarse_skew"])
    for name in ("a", "b"):
        assert standardize_scenes([url], str(tmp_path / name), CFG, client)[0].status == "done"

    def tree(root: Path) -> dict[str, bytes]:
        return {
            str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
        }

    a, b = tree(tmp_path / "a"), tree(tmp_path / "b")
    assert a.keys() == b.keys() and len(a) > 5
    assert a == b


def test_list_files_expand_and_public_buckets_are_read_anonymously(
    scenes, s3, tmp_path, monkeypatch
):
    import s3fs

    from sarlo_dask import store
    from sarlo_dask.geometry.sicd import read_sicd_meta
    from sarlo_dask.io.catalog import expand_inputs

    listing = tmp_path / "scenes.txt"
    listing.write_text(f"# the catalogue\n{scenes['fine']}\n\n")
    assert expand_inputs([str(listing)]) == [str(scenes["fine"])]
    with pytest.raises(ValueError, match=r"\*\.nitf: no scene matches"):
        expand_inputs([str(listing), f"{tmp_path}/*.nitf"])  # never dropped silently
    http = "http://127.0.0.1:9/scenes/a.nitf?token=abc"  # a query, not a glob
    assert expand_inputs([http]) == [http]

    fs = s3fs.S3FileSystem(**s3)
    fs.put_file(str(scenes["coarse"]), "sarlo/open/coarse.nitf")
    fs.chmod("sarlo/open/coarse.nitf", acl="public-read")  # an open-data bucket's object
    endpoint = {"client_kwargs": s3["client_kwargs"]}
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    store._aws_credentials_available.cache_clear()
    try:
        assert store.input_options("s3://sarlo/open/coarse.nitf", endpoint)["anon"] is True
        assert "anon" not in store.input_options("s3://x/y.nitf", s3)  # keys given: used
        s3fs.S3FileSystem.clear_instance_cache()
        assert expand_inputs(["s3://sarlo/open/"], endpoint) == ["s3://sarlo/open/coarse.nitf"]
        sicd = read_sicd_meta("s3://sarlo/open/coarse.nitf", endpoint)
        assert sicd.ImageData.NumRows == 512
    finally:
        store._aws_credentials_available.cache_clear()


def test_the_device_is_the_cpu_unless_asked_and_never_in_the_output(scenes, client, tmp_path):
    """The CPU by default, even on workers that declare GPU=1 (the CuPy path has not yet run
    on a real GPU); `device: auto` asks for 'cuda' there, and on workers that declare a GPU but
    have none (a misconfigured cluster) the scene fails saying why. The device tunes execution:
    the store's provenance does not name it (lineage)."""
    from distributed import Client, LocalCluster

    url = str(scenes["coarse"])
    (res,) = standardize_scenes([url], str(tmp_path / "cpu"), CFG, client)
    assert res.status == "done"
    store = open_scene_store(scene_store_url(str(tmp_path / "cpu"), "coarse"))
    assert '"spacing": 0.8' in store.attrs["provenance"]
    assert "device" not in store.attrs["provenance"]

    with (
        LocalCluster(
            n_workers=1, threads_per_worker=1, resources={"GPU": 1}, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as gpu_client,
    ):
        (default,) = standardize_scenes([url], str(tmp_path / "gpu"), CFG, gpu_client)
        auto = CFG.model_copy(update={"device": "auto"})
        (res,) = standardize_scenes([url], str(tmp_path / "auto"), auto, gpu_client)
    assert default.status == "done"
    assert res.status == "failed"
    assert "device 'cuda' needs CuPy and a CUDA device on every worker" in res.reason
    assert "\n" not in res.reason


def test_an_input_changed_under_the_same_url_is_made_again_with_its_tiles(client, tmp_path):
    import json

    from sarlo_dask.config import TileConfig, on_device
    from sarlo_dask.pipeline import tile_scenes
    from sarlo_dask.sim.scene import simulate_scene

    path = tmp_path / "in" / "scene.nitf"
    simulate_scene(path, SimulationSpec(rows=320, cols=320, seed=1))
    cfg, tiles = StandardizeConfig(min_size=64), TileConfig(size=128, stride=128, optical=None)
    work = str(tmp_path / "work")
    assert standardize_scenes([str(path)], work, cfg, client)[0].status == "done"
    assert tile_scenes(work, tiles, client)[0].status == "done"
    assert standardize_scenes([str(path)], work, cfg, client)[0].status == "skipped"
    marker = json.loads(Path(scene_marker_url(work, "scene")).read_text())
    assert set(marker["inputs"]) == {str(path)}
    assert marker["settings"] == on_device(cfg, gpus=False).digest()  # the workers have none
    before = open_scene_store(scene_store_url(work, "scene")).slc.values

    simulate_scene(path, SimulationSpec(rows=320, cols=320, seed=2))  # other pixels, same URL
    again = standardize_scenes([str(path)], work, cfg, client)[0]
    assert again.status == "done" and again.rebuilt == f"input changed ({path})", again.rebuilt
    fresh = standardize_scenes([str(path)], str(tmp_path / "fresh"), cfg, client)[0]
    after = open_scene_store(scene_store_url(work, "scene")).slc.values
    assert not np.array_equal(after, before)
    assert np.array_equal(after, open_scene_store(fresh.store).slc.values)
    redone = tile_scenes(work, tiles, client)[0]  # the tiles of the old pixels are not reused
    assert redone.status == "done" and "standardize settings changed" in redone.rebuilt
