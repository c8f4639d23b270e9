"""Real sensor geometries: every SICD XML of ../shared/data/sicd-xml (Umbra PFA spotlight,
TerraSAR-X and RCM RMA/INCA, Sentinel-1 PFA bursts, NGA/Valkyrie examples) is either refused
by the selection with a reason, or simulated with its own geometry (simulate_like: its grid,
weighting, skew, image formation, written by sarkit) and standardized. The output is judged
by independent references: sarpy's projection of the written XML, the ideal band-limited
interpolant, dense projection, sarkit's consistency checker and sarpy's is_valid."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from sarlo_dask.config import StandardizeConfig
from sarlo_dask.errors import SceneError
from sarlo_dask.geometry.checks import check_sicd
from sarlo_dask.geometry.geolocation import BISTATIC_OK, llh_to_ecf, project_pixels
from sarlo_dask.geometry.sicd import open_sicd, read_sicd_meta, sicd_from_xml
from sarlo_dask.geometry.tiles import tile_llh
from sarlo_dask.sim.like import simulate_like
from sarlo_dask.sim.variants import apply_variant
from sarlo_dask.stages.standardize import plan_scene

from .conftest import SICD_XML, corpus_id, corpus_missing, corpus_params
from .helpers import correlation, ideal_reference, interior, peak
from .validators import RECIPE_FINDINGS, judged_chip, sarpy_findings, sicdcheck_findings

CORPUS = SICD_XML
XMLS = corpus_params(sorted(CORPUS.glob("*.xml")) + sorted(CORPUS.glob("synthetic/*.xml")), CORPUS)
OUT_PX = 300  # output pixels per axis at 0.8 m: 2 x 2 tiles of 128 and more
TILE = 128
TARGET_PX = 0.05  # every target within this of where the written XML projects it
CFG = StandardizeConfig(min_size=2 * TILE, chunk_azimuth=256, chunk_range=256, store_chunk=128)

REFUSED = {  # resolutions outside the recipe's 0.2-2 m: refusal cases
    "rcm1_strip_rma_montreal_chip50x50.xml": "range) resolution 8.552 m is outside",
    "rcm1_strip_rma_montreal_chip50x50_FULLFRAME.xml": "range) resolution 8.552 m is outside",
    "s1a_iw1_pfa_detroit_20250619.xml": "range) resolution 2.353 m is outside",
    "s1a_iw2_pfa_mojave_20250602.xml": "range) resolution 2.753 m is outside",
    "s1c_iw2_pfa_germany_20250615.xml": "range) resolution 2.752 m is outside",
    "s1c_iw2_pfa_mojave_20250527.xml": "range) resolution 2.752 m is outside",
}


KEPT = {  # findings of the validators on the inputs, which the pipeline keeps: why they exist
    "check_ipp_poly:": "TerraSAR-X: IPPEnd is one past IPPPoly(TEnd) (the vendor's count)",
    "sarpy: IPPSetType: IPPEnd": "the same, as sarpy words it",
    "check_iprbw_to_ss_osr_row: Row OSR >= 1.1": "TerraSAR-X samples its range band at 1.07",
    "check_image_formation_timeline:": "Umbra: TStartProc is 2.5 ms before CollectStart",
    "check_tx_freq_bounds:": "Umbra: the waveform's frequencies do not bound the collected band",
    "sarpy: RadarCollectionType:": "the same Umbra waveform, as sarpy words it",
    "check_area_plane_valid:": "NGA/Valkyrie examples: sarkit's Area-plane check raises on them",
    "check_image_corners:": "bistatic example: its corners come from sarpy, which projects a "
    "bistatic collect as monostatic (42 m from sarkit's bistatic projection)",
    "sarpy: PFAType:": "the examples' PFA polynomials disagree with their own geometry",
    "check_geoinfo_polygon:": "sarpy's example: its GeoInfo polygon runs counter-clockwise "
    "(a check of sarkit >= 1.9)",
    "sarpy: TimelineType:": "the example's IPP time range is not its CollectDuration",
    "sarpy: SICDType: No Radiometric data provided.": "no Radiometric block (a note, not invalid)",
    "sarpy: SICDType: Image formation algorithm `RMA` populated, but ImageFormation."
    "ImageFormAlgo populated as `OTHER`": "Capella: OTHER (backprojected) beside its RMA block",
    "sarpy: is_valid False": "follows from the findings above",
}


def _unexplained(findings: set[str]) -> set[str]:
    return {f for f in findings if not any(f.startswith(k) for k in KEPT)}


def test_the_corpus_is_there():
    """In CI (SARLO_REQUIRE_TEST_DATA=1) the real corpus must exist: a missing one fails
    here; elsewhere its absence is one skip naming where it was looked for."""
    if why := corpus_missing(CORPUS):
        pytest.skip(why)
    assert len(XMLS) >= 14, f"real SICD XML corpus missing or incomplete at {CORPUS}"


@pytest.mark.parametrize("path", XMLS, ids=corpus_id)
def test_each_real_geometry_is_standardized_faithfully_or_refused(path, tmp_path):
    xml = path.read_text(encoding="utf-8")
    if path.name in REFUSED:
        with pytest.raises(SceneError, match=re.escape(REFUSED[path.name])):
            plan_scene(sicd_from_xml(xml), CFG, path.name)
        return
    sicd = sicd_from_xml(xml)
    if sicd.CollectionInfo.CollectType == "BISTATIC" and not BISTATIC_OK:
        with pytest.raises(SceneError, match="bistatic collection: sarkit < 1.9"):
            plan_scene(sicd, CFG, path.name)
        return
    _standardize_and_judge(xml, path.name, tmp_path)


VARIANTS = [  # (real geometry, documented transformation: sarlo_dask.sim.variants)
    ("tsx1_sl_rma_bavaria_chip5x5.xml", "backprojected"),  # Capella's OTHER + RMA/INCA
    ("umbra04_spot_pfa_melbourne_tile512.xml", "left"),  # SideOfTrack L
    ("tsx1_sl_rma_bavaria_chip5x5.xml", "left"),  # L, TimeCOA falling with the column
    ("umbra04_spot_pfa_melbourne_tile512.xml", "squint"),  # DopplerConeAng 76 deg
]


@pytest.mark.parametrize("name,variant", VARIANTS, ids=[f"{n}:{v}" for n, v in VARIANTS])
def test_each_variant_geometry_is_standardized_faithfully(name, variant, tmp_path):
    if why := corpus_missing(CORPUS):
        pytest.skip(why)
    xml = apply_variant((CORPUS / name).read_text(encoding="utf-8"), variant)
    sicd = sicd_from_xml(xml)
    coa = sicd.SCPCOA
    if variant == "backprojected":  # the transformation did what it says
        assert sicd.ImageFormation.ImageFormAlgo == "OTHER" and sicd.RMA.INCA is not None
    if variant == "left":  # the column unit vector anti-parallel to the velocity
        assert coa.SideOfTrack == "L"
        assert np.dot(sicd.Grid.Col.UVectECF.get_array(), coa.ARPVel.get_array()) < 0
        if sicd.RMA is not None:  # a zero-Doppler grid: later columns were seen earlier
            assert sicd.Grid.TimeCOAPoly.get_array()[0, 1] < 0  # d TimeCOA / d col at the SCP
    if variant == "squint":
        assert abs(coa.DopplerConeAng - 76.0) < 0.01, coa.DopplerConeAng
    _standardize_and_judge(xml, f"{name}:{variant}", tmp_path)


def test_an_undeclared_image_formation_without_a_consistent_model_is_refused():
    """OTHER is accepted only with its grid's model populated and consistent (sarkit's INCA
    checks): each failure is refused with its reason, before any pixel is read."""
    if why := corpus_missing(CORPUS):
        pytest.skip(why)
    xml = apply_variant((CORPUS / "tsx1_sl_rma_bavaria_chip5x5.xml").read_text(), "backprojected")
    check_sicd(sicd_from_xml(xml), "ok", 0.2, 2.0)
    far = sicd_from_xml(xml)
    far.RMA.INCA.R_CA_SCP += 150.0  # the closest-approach range no longer the orbit's
    with pytest.raises(
        SceneError,
        match=r"OTHER: its RMA/INCA block contradicts its own "
        r"geometry \(sarkit check_inca: Calculated SCP range ca matches",
    ):
        check_sicd(far, "far.nitf", 0.2, 2.0)
    bare = sicd_from_xml(xml)
    bare.RMA = None
    with pytest.raises(
        SceneError, match="image formation OTHER on a RGZERO grid with no populated RMA/INCA"
    ):
        check_sicd(bare, "bare.nitf", 0.2, 2.0)


def _standardize_and_judge(xml: str, name: str, tmp_path) -> None:
    """Simulate `xml`'s geometry, standardize it and judge the output by the references."""
    import dask
    from sarpy.geometry.point_projection import ground_to_image, image_to_ground
    from sarpy.io.complex.sicd import SICDReader

    from sarlo_dask.stages.standardize import standardize_scene

    sicd = sicd_from_xml(xml)
    rows = math.ceil(OUT_PX * CFG.spacing / sicd.Grid.Row.SS)
    cols = math.ceil(OUT_PX * CFG.spacing / sicd.Grid.Col.SS)
    nitf = tmp_path / "like.nitf"
    truth = simulate_like(xml, nitf, rows, cols, seed=3, n_targets=4)
    src = read_sicd_meta(str(nitf))
    src_xml = src.to_xml_string(tag="SICD")
    with dask.config.set(scheduler="synchronous"):
        ds = standardize_scene(open_sicd(str(nitf), 256), CFG).compute()
    out_xml = ds.attrs["sicd_xml"]
    out = sicd_from_xml(out_xml)
    img = ds.slc.values  # (azimuth, range)

    # targets sit where the written XML projects them (well-separated ones, off the edges)
    pos = [np.asarray(ground_to_image(np.array(t["ecf"]), out)[0]) for t in truth["targets"]]
    alone = [  # no other target within 30 px: its peak is its own
        i
        for i, (r, c) in enumerate(pos)
        if min((np.hypot(r - q[0], c - q[1]) for j, q in enumerate(pos) if j != i), default=99)
        >= 30
    ]
    measured = 0
    for i in alone:
        r, c = pos[i]
        if 16 < r < img.shape[1] - 16 and 16 < c < img.shape[0] - 16:
            a, rr = peak(img, c, r)
            assert abs(a - c) < TARGET_PX and abs(rr - r) < TARGET_PX, (name, (r, c), (rr, a))
            measured += 1
    assert measured >= 1, "no target to measure"
    in_chips = 0

    # the band-limited interpolant of the deskewed input, at the written grid
    data = np.asarray(SICDReader(str(nitf))[:, :])
    assert correlation(interior(ideal_reference(data, src, out)), interior(img.T)) >= 0.999

    # tie points within their recorded bound of dense projection (sarkit, as the pipeline)
    rng = np.random.default_rng(0)
    pa = rng.uniform(0, img.shape[0] - 1, 200)
    pr = rng.uniform(0, img.shape[1] - 1, 200)
    got = llh_to_ecf(tile_llh(ds.lat, ds.lon, ds.hae, pa, pr))
    dense = project_pixels(out_xml, pr, pa)  # the XML text: sarpy's calls may edit `out`
    assert np.linalg.norm(got - dense, axis=1).max() <= ds.attrs["geolocation_error_bound_m"]
    # sarkit and sarpy place the output's pixels as they place the input's: identically on
    # consistent products; the NGA/Valkyrie examples' PFA polynomials are inconsistent (sarpy
    # says so) and the two libraries already part by 5-42 m on their input
    sarpy_out = image_to_ground(np.column_stack([pr, pa]), out, projection_type="HAE")
    apart_out = np.linalg.norm(dense - sarpy_out, axis=1).max()
    n_r, n_c = src.ImageData.NumRows, src.ImageData.NumCols
    ends = np.array([[0, 0], [0, n_c - 1], [n_r - 1, n_c - 1], [n_r - 1, 0]], dtype=float)
    apart_in = np.linalg.norm(
        project_pixels(src_xml, ends[:, 0], ends[:, 1])
        - image_to_ground(ends, src, projection_type="HAE"),
        axis=1,
    ).max()
    assert apart_out <= apart_in + (1e-3 if apart_in < 1e-3 else 0.5), (apart_in, apart_out)

    # validators: the store adds nothing to the input's findings (the recipe's own aside),
    # each chip nothing to the store's
    in_check, in_sarpy = sicdcheck_findings(src_xml), sarpy_findings(src_xml)
    assert not _unexplained(in_check | {f"sarpy: {f}" for f in in_sarpy}), name
    store_check, store_sarpy = sicdcheck_findings(out_xml), sarpy_findings(out_xml)
    assert store_check <= in_check | set(RECIPE_FINDINGS), name
    assert store_sarpy <= in_sarpy, name
    origins = [(0, 0), (TILE, 0), (0, TILE), (OUT_PX - TILE, OUT_PX - TILE)]
    for i in alone[:2]:  # and chips off the tile grid holding a lone target
        r, c = pos[i]
        a0 = int(np.clip(round(c) - TILE // 2 + 7, 0, img.shape[0] - TILE))
        r0 = int(np.clip(round(r) - TILE // 2 - 5, 0, img.shape[1] - TILE))
        origins.append((a0, r0))
    for a0, r0 in origins:
        crop = {"azimuth": [a0, a0 + TILE], "range": [r0, r0 + TILE]}
        c_sicd = judged_chip(out_xml, ds, crop, (store_check, store_sarpy))
        # a target in the chip sits where the chip's own XML projects it
        # (sarpy's image coordinates count from the chip's first pixel, FirstRow/FirstCol;
        # its ground_to_image stops within 1 cm on the ground: 0.02 px between two XMLs)
        tile = img[a0 : a0 + TILE, r0 : r0 + TILE]
        for i in alone:
            (r, c), _, _ = ground_to_image(np.array(truth["targets"][i]["ecf"]), c_sicd)
            assert abs(r + r0 - pos[i][0]) < 0.02 and abs(c + a0 - pos[i][1]) < 0.02, (name, crop)
            if 16 < r < TILE - 16 and 16 < c < TILE - 16:
                a, rr = peak(tile, c, r)
                assert abs(a - c) < TARGET_PX and abs(rr - r) < TARGET_PX, (name, crop)
                in_chips += 1
    assert in_chips >= 1, "no target inside a chip to measure"


def test_sarlo_build_releases_the_variant_geometries_as_a_user_builds_them(tmp_path):
    """`sarlo simulate --like --variant` then `sarlo build` as a user runs them: Capella's
    OTHER + RMA/INCA, a left-looking and a squinted Umbra geometry, and a scene 20x finer
    than 0.8 m are released; meta.json says which model projected each, and every sicd.xml
    of the release adds no sarkit (sicdcheck) or sarpy (is_valid) finding to its input's."""
    import json
    import tarfile

    from .test_cli import sarlo

    if why := corpus_missing(CORPUS):
        pytest.skip(why)
    tsx, umbra = CORPUS / "tsx1_sl_rma_bavaria_chip5x5.xml", CORPUS / VARIANTS[1][0]
    scenes = {  # name: simulate's arguments (a 256 px tile at 0.8 m and a little more)
        "capella": ["--like", str(tsx), "--variant", "backprojected", "--rows", "300",
                    "--cols", "200"],
        "left": ["--like", str(umbra), "--variant", "left", "--rows", "700", "--cols", "560"],
        "squint": ["--like", str(umbra), "--variant", "squint", "--rows", "700", "--cols", "560"],
        "fine": ["--spacing", "0.04", "--rows", "5200", "--cols", "5200", "--targets", "4"],
    }  # fmt: skip
    inputs = {}
    for name, args in scenes.items():
        res = sarlo("simulate", f"{name}.nitf", *args, "--seed", "2", cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        inputs[name] = read_sicd_meta(str(tmp_path / f"{name}.nitf")).to_xml_string(tag="SICD")
    (tmp_path / "build.yaml").write_text(
        "standardize: {min_size: 256, select_by: spacing, min_spacing: 0.03}\n"
        "tiles: {size: 256, stride: 256}\n"
    )
    build = sarlo(
        "build", *(f"{n}.nitf" for n in scenes), "--work", "w", "--out", "r",
        "--config", "build.yaml", cwd=tmp_path,
    )  # fmt: skip
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
    seen: dict[str, set[str]] = {}
    for shard in sorted((tmp_path / "r").rglob("*.tar")):
        with tarfile.open(shard) as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}
        for name, data in members.items():
            if not name.endswith(".meta.json"):
                continue
            meta = json.loads(data)
            scene = meta["scene_id"]
            chip = members[name.replace(".meta.json", ".sicd.xml")].decode()
            src = inputs[scene]
            assert sicdcheck_findings(chip) <= sicdcheck_findings(src) | set(RECIPE_FINDINGS)
            assert sarpy_findings(chip) <= sarpy_findings(src), scene
            acq = meta["acquisition"]
            seen.setdefault(scene, set()).add(acq["image_formation"]["model"])
            assert acq["look_side"] == ("left" if scene == "left" else "right"), scene
            if scene == "capella":
                assert acq["image_formation"]["declared"] == "OTHER"
                assert "sarkit" in acq["image_formation"]["why"]
            if scene == "fine":
                assert abs(acq["spacing_m"]["native"]["azimuth"] - 0.04) < 1e-9
    assert seen == {"capella": {"RMA/INCA"}, "left": {"PFA"}, "squint": {"PFA"}, "fine": {"PFA"}}
