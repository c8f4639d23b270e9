"""Declared seams, extended from outside the package: an optical source and a sample writer
registered in the process, and an optical source, a height source, a scene reader, a
caption backend and a sample writer that installed packages declare by entry point
(tests/plugins: modules and their dist-info, on PYTHONPATH as pip would put them on the
path), built with by `sarlo build` and rebuilt by `sarlo optical reconstruct` in fresh
processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image

from sarlo_dask import SceneReader
from sarlo_dask.optical import XYZSource, register, source_from_spec
from sarlo_dask.optical.mosaic import build_mosaic

PLUGINS = Path(__file__).parent / "plugins"


@dataclass(frozen=True)
class Grey(XYZSource):
    """A source defined here: uniform grey tiles, `grey:LEVEL`."""

    kind = "grey"
    level: int
    zoom: int = 18

    @classmethod
    def parse(cls, spec: str, zoom: int, **options: Any) -> Grey | None:
        return cls(int(spec[5:]), zoom) if spec.startswith("grey:") else None

    def describe(self) -> str:
        return f"grey:{self.level}"

    def fetch(self, tiles):
        import io

        buf = io.BytesIO()
        Image.new("RGB", (256, 256), (self.level,) * 3).save(buf, "PNG")
        return {t: buf.getvalue() for t in tiles}


def test_a_registered_source_is_taken_by_spec_and_mosaicked():
    with pytest.raises(ValueError, match="not an http.s. XYZ template, a GeoTIFF or a folder"):
        source_from_spec("grey:90", 18)
    assert register(Grey) is Grey
    source = source_from_spec("grey:90", 18)
    assert source == Grey(90, 18) and source.describe() == "grey:90"
    m = build_mosaic(source, 2.2, 48.71, 2.201, 48.711)
    assert m.tiles and not m.failures and (m.image[..., :3] == 90).all()
    with pytest.raises(TypeError, match="not an OpticalSource class"):
        register(dict)  # type: ignore[arg-type]


def _env() -> dict[str, str]:
    path = os.pathsep.join([str(PLUGINS), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "HF_HUB_OFFLINE": "1"}


def test_an_installed_source_builds_and_reconstructs(scenes, tmp_path):
    """The toy package's `stripes:16`, found through its entry point in the CLI process and
    unpickled on the workers: every tile of the build has its optical view from it, meta.json
    records `stripes:16`, and `sarlo optical reconstruct` gives the build's image back from
    that record alone. Without the package on the path, the same spec is refused up front."""
    config = tmp_path / "build.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "standardize": {"min_size": 64, "chunk_azimuth": 256, "chunk_range": 256},
                "tiles": {"size": 128, "stride": 128},
            }
        )
    )
    sarlo = str(Path(sys.executable).parent / "sarlo")
    argv = [sarlo, "build", str(scenes["coarse"]), "--work", "work", "--out", "out"]
    argv += ["--config", str(config), "--optical", "stripes:16", "--zoom", "18"]
    argv += ["--cluster", "local", "--workers", "2"]
    res = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, env=_env())
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    metas = sorted((tmp_path / "work" / "tiles").glob("*/*.meta.json"))
    assert metas
    for meta in metas:
        optical = json.loads(meta.read_text())["optical"]
        assert optical["source"] == "stripes:16" and optical["status"] == "ok", optical
    meta = metas[0]
    out = tmp_path / "again.png"
    rebuild = [sys.executable, "-m", "sarlo_dask.cli", "optical", "reconstruct", str(meta)]
    res = subprocess.run([*rebuild, "--out", str(out)], capture_output=True, text=True, env=_env())
    assert res.returncode == 0, res.stderr
    built = str(meta).removesuffix(".meta.json") + ".optic.png"
    assert np.array_equal(np.asarray(Image.open(out)), np.asarray(Image.open(built)))

    plain = {**os.environ, "HF_HUB_OFFLINE": "1"}  # the package not installed
    res = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, env=plain)
    assert res.returncode == 2 and "dashboard" not in res.stdout, res.stdout + res.stderr
    assert "optical source 'stripes:16': not an http(s) XYZ template" in res.stderr


SMALL = {"standardize": {"min_size": 64}, "tiles": {"size": 128, "stride": 128}}
"""the settings of the coarse scene's builds here: no optical, no captions"""


def _build(source: str, name: str, cwd: Path, *more: str, env: dict | None = None):
    """`sarlo build SOURCE --work NAME --out NAME-out` with SMALL, as a user runs it."""
    config = cwd / "small.yaml"
    config.write_text(yaml.safe_dump(SMALL))
    argv = [str(Path(sys.executable).parent / "sarlo"), "build", source, "--work", name]
    argv += ["--out", f"{name}-out", "--config", str(config), "--workers", "2", *more]
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, env=env or _env())


@pytest.fixture(scope="module")
def coarse_built(scenes, tmp_path_factory) -> Path:
    """The coarse scene's SICD NITF built with SMALL: its tiles' folder."""
    root = tmp_path_factory.mktemp("seams")
    res = _build(str(scenes["coarse"]), "nitf", root)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    return root / "nitf" / "tiles" / "coarse"


def test_an_installed_height_source_builds_where_the_constant_height_does(
    scenes, coarse_built, tmp_path
):
    """The toy package's `flat:150` (tests/plugins/toy_heights.py, by entry point): the scene
    projected on it through the DEM path (tie points searched on its grid, within
    dem_bound_m) has every tile corner where the constant height of 150 m (the simulated
    ground's, the SCP's) puts it, within the tie points' bound on a DEM (dem_bound_m, 0.2 m;
    4.8 cm seen); meta.json names it. Without the package the
    spec is taken for a raster and refused before any cluster."""
    from sarlo_dask.config import StandardizeConfig
    from sarlo_dask.geometry.geolocation import metres_per_degree

    sarlo = str(Path(sys.executable).parent / "sarlo")
    res = _build(str(scenes["coarse"]), "flat", tmp_path, "--dem", "flat:150")
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    corners = {}
    for name, folder in (("constant", coarse_built), ("flat", tmp_path / "flat/tiles/coarse")):
        corners[name] = {m.name: json.loads(m.read_text()) for m in folder.glob("*.meta.json")}
    assert corners["flat"].keys() == corners["constant"].keys() and corners["flat"]
    north, east = metres_per_degree(48.7)
    for key, meta in corners["flat"].items():
        assert meta["terrain"]["dem"] == "flat:150", meta["terrain"]
        got = np.array(meta["corners_llh"])[:, :2]
        want = np.array(corners["constant"][key]["corners_llh"])[:, :2]
        off = np.hypot((got - want)[:, 0] * north, (got - want)[:, 1] * east)
        assert off.max() < StandardizeConfig().dem_bound_m, (key, off)

    plain = {**os.environ, "HF_HUB_OFFLINE": "1"}  # the package not installed
    argv = [sarlo, "build", str(scenes["coarse"]), "--work", "w", "--out", "o", "--dem", "flat:150"]
    res = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, env=plain)
    assert res.returncode == 2 and "dashboard" not in res.stdout, res.stdout + res.stderr
    assert "flat:150" in res.stderr, res.stderr


def test_a_writer_file_outside_its_own_names_is_refused():
    """A writer may add files, never replace the release's own or leave its generation."""
    from sarlo_dask.io.writers import ReleaseView, SampleWriter, render, versions
    from sarlo_dask.io.writers import register as register_writer

    names: list[str] = []

    @register_writer
    class Named(SampleWriter):
        kind = "named-for-test"

        def files(self, release: ReleaseView) -> dict[str, bytes]:
            return {n: b"x" for n in names}

    view = ReleaseView([], {}, {})
    bad_names = ("../up.txt", "/abs.txt", "index.parquet", "train/000.tar", "a/../b", "x.tar")
    bad_names += (".", "manifest.json", "Index.Parquet", "TRAIN/x.done.json", "a.partial-1")
    bad_names += ("..\\..\\x", "x.TAR", "card/\x00.md")
    for bad in bad_names:
        names[:] = [bad]
        with pytest.raises(ValueError, match="not a free relative path"):
            render(["named-for-test"], view)
    names[:] = ["card/README.md"]
    assert render(["named-for-test"], view) == {"card/README.md": ("named-for-test", b"x")}
    assert versions(["named-for-test"]) == ["named-for-test@0"]  # no package: no version
    Named.version = "2"  # an upgraded writer: another release digest, another generation
    assert versions(["named-for-test"]) == ["named-for-test@2"]
    with pytest.raises(ValueError, match="no sample writer 'nothing'"):
        render(["nothing"], view)


def test_a_failing_writer_publishes_nothing(release_setup, release_built, client, tmp_path):
    """A writer that raises: the build says which and why, its shards are committed in
    their generation, and the current release (manifest.json) stays the one before."""
    import shutil

    from sarlo_dask.build_config import BuildConfig
    from sarlo_dask.io.writers import ReleaseView, SampleWriter
    from sarlo_dask.io.writers import register as register_writer
    from sarlo_dask.pipeline import build_dataset

    from .helpers import build_configs, tree

    @register_writer
    class Fails(SampleWriter):
        kind = "fails-for-test"

        def files(self, release: ReleaseView) -> dict[str, bytes]:
            raise RuntimeError(f"no catalogue for {len(release.rows)} samples")

    root, urls, config = release_setup
    work, out = tmp_path / "work", tmp_path / "out"
    shutil.copytree(root / "work", work)
    shutil.copytree(release_built[0], out)
    before = (out / "manifest.json").read_bytes()
    scfg, tcfg, ccfg, rcfg = build_configs(config).stages()
    rcfg = rcfg.model_copy(update={"writers": ["fails-for-test"]})
    build = BuildConfig.of(scfg, tcfg, ccfg, rcfg)
    result = build_dataset(urls, str(work), str(out), build, client)
    assert result.exit_code() != 0
    failure = next(f for f in result.release.errors if f.id == "fails-for-test")
    assert "sample writer 'fails-for-test': RuntimeError: no catalogue for " in failure.reason
    assert (out / "manifest.json").read_bytes() == before
    assert tree(out) != tree(release_built[0])  # the new generation's shards are there
    rows = [json.loads(line) for line in (work / "failures.jsonl").read_text().splitlines()]
    assert any("no catalogue for" in r["reason"] for r in rows), rows


def test_an_installed_scene_reader_builds_what_the_nitf_builds(scenes, coarse_built, tmp_path):
    """The toy package's `*.sicd.npz` reader (tests/plugins/toy_reader.py, by entry point):
    a SICD NITF converted to it (the XML sarpy reads, the pixels sarpy reads) and given as a
    folder builds the same tiles as the NITF itself: the same keys, the same complex pixels,
    previews and chip SICDs, the same corners. Without the package the folder holds no
    scene: refused before any cluster, naming the endings looked for."""
    from sarpy.io.complex.converter import open_complex

    sys.path.insert(0, str(PLUGINS))
    try:
        from toy_reader import write_npz
    finally:
        sys.path.remove(str(PLUGINS))
    from sarlo_dask.geometry.sicd import read_sicd_meta

    nitf = str(scenes["coarse"])
    (tmp_path / "npz").mkdir()
    reader = open_complex(nitf)
    write_npz(
        str(tmp_path / "npz" / "coarse.sicd.npz"),
        read_sicd_meta(nitf).to_xml_string(tag="SICD"),
        reader[:, :],
    )
    reader.close()
    res = _build("npz", "npz", tmp_path)  # the folder: it yields the .sicd.npz file
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    tiles = {
        "nitf": sorted(coarse_built.glob("*")),
        "npz": sorted(tmp_path.glob("npz/tiles/coarse/*")),
    }
    names = [p.name for p in tiles["nitf"]]
    assert names == [p.name for p in tiles["npz"]] and len(names) > 10
    for a, b in zip(tiles["nitf"], tiles["npz"], strict=True):
        if a.name.endswith((".sar.npy", ".sar.png", ".sicd.xml")):
            assert a.read_bytes() == b.read_bytes(), a.name
        elif a.name.endswith(".meta.json"):
            ma, mb = json.loads(a.read_text()), json.loads(b.read_text())
            assert ma["corners_llh"] == mb["corners_llh"] and ma["key"] == mb["key"]

    sarlo = str(Path(sys.executable).parent / "sarlo")
    plain = {**os.environ, "HF_HUB_OFFLINE": "1"}  # the package not installed
    argv = [sarlo, "build", "npz", "--work", "w", "--out", "o"]
    res = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, env=plain)
    assert res.returncode == 2 and "dashboard" not in res.stdout, res.stdout + res.stderr
    assert "no scene matches (no *.nitf / *.ntf file)" in res.stderr, res.stderr


class InProcessNpz(SceneReader):
    """A scene reader defined here, registered in the test's process only (no package, no
    entry point): the toy package's `*.sicd.npz` format under another suffix."""

    kind = "in-process-npz"
    suffixes = (".inproc.npz",)

    def sicd(self, url: str, storage_options: dict[str, Any] | None) -> Any:
        from sarlo_dask import sicd_from_xml

        with np.load(url) as z:
            return sicd_from_xml(str(z["xml"]))

    def rows(self, url: str, storage_options: dict[str, Any] | None, r0: int, r1: int) -> Any:
        with np.load(url) as z:
            return z["pixels"][r0:r1]


def test_a_reader_registered_in_the_process_reads_on_the_workers(scenes, client, tmp_path):
    """`readers.register` in the calling process (a notebook's class): the build's worker
    processes, which did not know the kind before, read the scene through it, and its store
    holds the NITF's pixels. Unregistered, the workers forget it again."""
    from sarpy.io.complex.converter import open_complex

    from sarlo_dask.driver.worker_state import share_registered
    from sarlo_dask.geometry.sicd import read_sicd_meta
    from sarlo_dask.io import readers
    from sarlo_dask.pipeline import standardize_scenes
    from sarlo_dask.stages.standardize import open_scene_store

    from .helpers import small_scene_config

    nitf = str(scenes["coarse"])
    npz = str(tmp_path / "coarse_npz.inproc.npz")
    reader = open_complex(nitf)
    xml = read_sicd_meta(nitf).to_xml_string(tag="SICD")
    with open(npz, "wb") as f:
        np.savez(f, xml=np.array(xml), pixels=reader[:, :].astype(np.complex64))
    reader.close()

    def kinds_on_workers() -> set[str]:
        found = client.run(lambda: [k.kind for k in readers.KINDS.kinds()])
        assert len(found) >= 2  # worker processes, not this one
        return {k for ks in found.values() for k in ks}

    assert "in-process-npz" not in kinds_on_workers()
    readers.register(InProcessNpz)
    try:
        got = standardize_scenes([nitf, npz], str(tmp_path / "work"), small_scene_config(), client)
        assert "in-process-npz" in kinds_on_workers()
    finally:
        readers.KINDS.registered.remove(InProcessNpz)
        share_registered(client)
    assert "in-process-npz" not in kinds_on_workers()
    status = sorted((r.scene_id, r.status, r.reason) for r in got)
    assert [s[:2] for s in status] == [("coarse", "done"), ("coarse_npz", "done")], status
    a = open_scene_store(str(tmp_path / "work" / "scenes" / "coarse.zarr"))
    b = open_scene_store(str(tmp_path / "work" / "scenes" / "coarse_npz.zarr"))
    np.testing.assert_array_equal(a.slc.values, b.slc.values)


def test_an_installed_caption_backend_and_sample_writer_make_the_release(
    release_setup, release_built, tmp_path
):
    """The toy packages' `brightness` caption backend (tests/plugins/toy_captions.py) and
    `keylist` sample writer (tests/plugins/toy_writer.py), by entry point, named in
    captions.backend and release.writers of one build: every released sample is captioned by
    the backend, each caption telling its own tile's optical view (its mean brightness), the
    records naming its model; the writer's files land in the release's generation, listed in
    the manifest with their size and sha256, a line for each sample of index.parquet with its
    caption; `sarlo verify` checks them (a changed byte is a MISMATCH); the same command again
    changes nothing. Without the packages each setting is refused before any cluster."""
    import hashlib
    import re
    import shutil
    from collections import Counter

    import pyarrow.parquet as pq

    root, urls, config = release_setup
    shutil.copytree(root / "work", tmp_path / "work", ignore=shutil.ignore_patterns("captions"))
    settings = yaml.safe_load(config.read_text())
    settings["captions"] = {"backend": "brightness", "model": "toy", "batch_size": 4}
    settings["release"]["writers"] = ["keylist"]
    (tmp_path / "toy.yaml").write_text(yaml.safe_dump(settings))
    sarlo = str(Path(sys.executable).parent / "sarlo")
    argv = [sarlo, "build", *urls, "--work", "work", "--out", "out"]
    argv += ["--config", "toy.yaml", "--workers", "2"]
    res = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, env=_env())
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    out = tmp_path / "out"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["captions"]["without"] == 0 and manifest["captions"]["captioned"] > 0
    gen = out / manifest["generation"]
    index = pq.read_table(gen / "index.parquet").to_pylist()
    for r in index:  # captioned by the backend, each from its own tile's view
        level = re.fullmatch(r"Ground of mean brightness (\d+) of 255\.", r["caption_short"])
        optic = tmp_path / "work" / "tiles" / r["scene_id"] / f"{r['key']}.optic.png"
        want = int(np.asarray(Image.open(optic).convert("RGB").convert("L")).mean())
        assert level is not None and int(level.group(1)) == want, (r["key"], r["caption_short"])
    record = next((tmp_path / "work" / "captions").glob("*/*.json"))
    assert "toy-brightness-1" in record.read_text()

    listed = {e["path"]: e for e in manifest["files"]}  # the writer's files
    assert sorted(listed) == ["keylist/counts.json", "keylist/samples.tsv"]
    for path, e in listed.items():
        data = (gen / path).read_bytes()
        assert e["writer"] == "keylist" and e["bytes"] == len(data)
        assert e["sha256"] == hashlib.sha256(data).hexdigest()
    lines = (gen / "keylist" / "samples.tsv").read_text().splitlines()[1:]
    assert [tuple(line.split("\t")) for line in lines] == sorted(
        (r["key"], r["split"], r["shard"], r["caption_short"]) for r in index
    )
    counts = json.loads((gen / "keylist" / "counts.json").read_text())
    assert counts == Counter(r["split"] for r in index) and sum(counts.values()) > 0
    check = subprocess.run([sarlo, "verify", "out"], cwd=tmp_path, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr

    stamps = {p: p.stat().st_mtime_ns for p in sorted(out.rglob("*")) if p.is_file()}
    again = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, env=_env())
    assert again.returncode == 0 and "0 written" in again.stdout, again.stdout[-2000:]
    assert {p: p.stat().st_mtime_ns for p in sorted(out.rglob("*")) if p.is_file()} == stamps

    tsv = gen / "keylist" / "samples.tsv"
    tsv.write_bytes(tsv.read_bytes().replace(b"\t", b" ", 1))  # one byte changed
    check = subprocess.run([sarlo, "verify", "out"], cwd=tmp_path, capture_output=True, text=True)
    assert check.returncode != 0, check.stdout
    assert "MISMATCH" in check.stdout + check.stderr and "keylist/samples.tsv" in check.stdout

    plain = {**os.environ, "HF_HUB_OFFLINE": "1"}  # the packages not installed
    for section, why in (("captions", "no caption backend 'brightness'"),
                         ("release", "no sample writer 'keylist'")):  # fmt: skip
        one = yaml.safe_load(config.read_text())
        one[section] = settings[section]
        (tmp_path / "one.yaml").write_text(yaml.safe_dump(one))
        res = subprocess.run(
            [*argv[:-4], "--config", "one.yaml", "--workers", "2"],
            cwd=tmp_path, capture_output=True, text=True, env=plain,
        )  # fmt: skip
        assert res.returncode == 2 and "dashboard" not in res.stdout, res.stdout + res.stderr
        assert why in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr


@pytest.mark.parametrize(
    "group", ["scene_readers", "optical_sources", "height_sources", "sample_writers"]
)
def test_a_broken_installed_package_is_one_line_before_any_cluster(scenes, tmp_path, group):
    """An installed package whose entry point cannot be loaded (its module gone): `sarlo
    build` says which, in one line, exit 2, before any cluster starts."""
    info = tmp_path / "site" / "sarlo_broken-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: sarlo-broken\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[sarlo_dask.{group}]\nbroken = nosuchmod:X\n")
    path = os.pathsep.join([str(tmp_path / "site"), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path, "HF_HUB_OFFLINE": "1"}
    argv = [str(Path(sys.executable).parent / "sarlo"), "build", str(scenes["coarse"])]
    argv += ["--work", "w", "--out", "o"]
    res = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, env=env)
    assert res.returncode == 2 and "dashboard" not in res.stdout, res.stdout + res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert f"broken = nosuchmod:X (sarlo_dask.{group}): cannot be loaded" in res.stderr
