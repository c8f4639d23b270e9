"""The whole build and its release: determinism, read-back, splits, resume after kills, S3."""

from __future__ import annotations

import io
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sarlo_dask import dataset
from sarlo_dask.pipeline import build_dataset
from sarlo_dask.release.publish import SampleRef, shard_plan, split_passes, split_report

from .helpers import build_configs, lost_samples, tree
from .rangeserver import RangeServer
from .validators import RECIPE_FINDINGS, sarpy_findings, sicdcheck_findings

META_FIELDS = {
    "crop", "Nb_pixel_a", "Nb_pixel_r", "ss_row", "ss_col", "spacing_eff_az",
    "spacing_eff_rg", "scp_row", "scp_col", "bbox_ecf", "bbox_llh", "incidence_angles",
    "optical", "caption", "label", "split", "provenance", "pass_id", "scene_id", "key",
    "operation_sampling",
}  # fmt: skip


def test_two_clean_builds_give_the_same_bytes(release_setup, release_built, client, tmp_path):
    _, urls, config = release_setup
    out, first = release_built
    again = build_dataset(
        urls, str(tmp_path / "work"), str(tmp_path / "out"), build_configs(config), client
    )
    assert again.exit_code() == 0
    assert tree(tmp_path / "out") == tree(out)
    assert first.release.manifest["samples"] > 12 and len(first.release.manifest["shards"]) > 3


def test_two_builds_at_once_on_one_cluster_each_write_their_own(
    release_setup, release_built, client, tmp_path
):
    """The same settings and scenes, two {work}/{out} pairs, one cluster, at the same time:
    no task of one build stands in for the other's (task keys name their store)."""
    import threading

    _, urls, config = release_setup
    out_ref, _ = release_built
    results: dict[str, object] = {}

    def build(name: str) -> None:
        results[name] = build_dataset(
            urls,
            str(tmp_path / name / "work"),
            str(tmp_path / name / "out"),
            build_configs(config),
            client,
        )

    threads = [threading.Thread(target=build, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert [results[n].exit_code() for n in ("a", "b")] == [0, 0]  # type: ignore[attr-defined]
    ref = tree(out_ref)
    assert tree(tmp_path / "a" / "out") == ref
    assert tree(tmp_path / "b" / "out") == ref


def test_samples_read_back_complete_with_pass_disjoint_splits(release_built):
    from jsonschema import Draft202012Validator

    from sarlo_dask.geometry.sicd import sicd_from_xml

    schema = Draft202012Validator(
        dataset.meta_schema(), format_checker=Draft202012Validator.FORMAT_CHECKER
    )
    out, result = release_built
    manifest = json.loads((out / "manifest.json").read_text())
    passes: dict[str, set[str]] = {}
    n = 0
    for split in ("train", "validation", "test"):
        if not manifest["splits"][split]["samples"]:
            continue
        for sample in dataset.open(str(out), split):
            n += 1
            key = sample["__key__"]
            assert "." not in key
            assert set(sample) - {"__key__", "__url__"} == {
                "sar.npy", "sar.png", "sicd.xml", "meta.json"
            }  # fmt: skip
            arr = sample["sar.npy"]
            assert arr.dtype == np.dtype("<c8") and arr.shape == (128, 128)
            meta = sample["meta.json"]
            assert META_FIELDS <= set(meta), META_FIELDS - set(meta)
            assert "city_id_satellite_pass" not in meta and meta["schema_version"] == "2.4"
            # single-look speckle of the simulated clutter: ENL 1 (the moment estimator)
            assert 0.9 < meta["quality"]["enl"] < 1.1, meta["quality"]
            assert meta["acquisition"]["image_formation"] == {
                "declared": "PFA", "model": "PFA",
                "why": "declared by ImageFormation.ImageFormAlgo",
            }  # fmt: skip
            # the inputs share one folder (the catalogue root): a name, no builder's path
            assert meta["source_url"] == f"{meta['scene_id']}.nitf", meta["source_url"]
            assert meta["split"] == split and meta["key"] == key
            assert set(meta["caption"]) == {"SHORT", "MID", "LONG"} and meta["label"]
            assert meta["provenance"]["version"] and meta["provenance"]["release_config"]
            sicd = sicd_from_xml(sample["sicd.xml"].decode())
            assert (sicd.ImageData.NumRows, sicd.ImageData.NumCols) == (128, 128)
            # the chip's SICD passes sarkit's and sarpy's validators (the recipe's OSR aside)
            assert sicdcheck_findings(sample["sicd.xml"]) <= set(RECIPE_FINDINGS)
            assert sarpy_findings(sample["sicd.xml"]) == set(), key
            schema.validate(meta)  # every released meta.json, against the shipped schema
            assert sicd.ImageData.FirstCol == meta["crop"]["azimuth"][0]
            passes.setdefault(meta["pass_id"], set()).add(split)
    assert n == manifest["samples"] == sum(s["samples"] for s in manifest["shards"])
    assert all(len(s) == 1 for s in passes.values()), passes  # no pass in two splits
    assert len({next(iter(s)) for s in passes.values()}) >= 2
    stats = json.loads((Path(dataset.release_root(str(out))) / "stats.json").read_text())
    assert stats["captions"]["MID"]["n"] == n


def _close(a, b) -> bool:
    """Equal JSON values, floats to 1e-9 (datasets' Json feature keeps 10 decimals)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(_close, a, b))
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return a == b


@pytest.mark.parametrize("where", ["local", "http"])
def test_the_release_streams_through_hugging_face_datasets(release_built, where):
    """From the release's folder, and from a loopback HTTP server that serves it as static
    files (no listing: the shards come from manifest.json) and logs what it sent."""
    datasets = pytest.importorskip("datasets")
    from PIL import Image

    out, _ = release_built
    server = RangeServer(out.parent) if where == "http" else None
    url = f"{server.url}/{out.name}" if server else str(out)
    files = dataset.hf_data_files(url)
    assert set(files) <= set(dataset.SPLITS) and files
    local = dataset.hf_data_files(str(out))
    assert files == {s: [u.replace(str(out), url) for u in local[s]] for s in local}
    for split in files:
        hf = datasets.load_dataset(
            "webdataset",
            data_files=files,
            split=split,
            streaming=True,
            features=dataset.hf_features(),
        )
        ours = list(dataset.open(str(out), split))
        theirs = list(hf)
        assert [s["__key__"] for s in theirs] == [s["__key__"] for s in ours]
        for a, b in zip(theirs, ours, strict=True):
            assert a["sar.npy"].dtype == np.complex64 and np.array_equal(a["sar.npy"], b["sar.npy"])
            assert _close(a["meta.json"], b["meta.json"])
            xml = b["sicd.xml"]
            assert a["sicd.xml"] == (xml.encode() if isinstance(xml, str) else xml)
            png = np.asarray(Image.open(io.BytesIO(b["sar.png"])))
            assert np.array_equal(np.asarray(a["sar.png"]), png)
    if server:  # every shard's bytes came from the server; a folder it lacks is named
        with pytest.raises(FileNotFoundError, match="nothing/manifest.json: not found"):
            dataset.hf_data_files(f"{server.url}/nothing")
        for shard in sum(files.values(), []):
            path = shard[len(server.url) :]
            assert server.traffic(path)[1] >= (out.parent / path.lstrip("/")).stat().st_size
        server.close()


def run_build(release_setup, work, out, env: dict | None = None) -> subprocess.Popen:
    _, urls, config = release_setup
    cmd = [sys.executable, "-m", "sarlo_dask.cli", "build", *urls, "--work", str(work)]
    cmd += ["--out", str(out), "--config", str(config), "--workers", "2"]
    return subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        text=True,
        env={**os.environ, **(env or {})},
    )


def kill_when(proc: subprocess.Popen, ready, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert proc.poll() is None  # still running when killed: the kill is the fault
    os.killpg(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL


def test_build_killed_at_several_points_resumes_to_the_same_bytes(
    release_setup, release_built, tmp_path, fault_table
):
    out_ref, _ = release_built
    work, out = tmp_path / "work", tmp_path / "out"
    points = [
        lambda: any((work / "scenes").glob("*.done.json")),
        lambda: any((work / "tiles").glob("*/*.meta.json")),
        lambda: any((work / "captions").glob("*/*.json")),
        lambda: any(out.glob("gen-*/*/chunk_*/*.done.json")),
    ]
    for ready in points:
        kill_when(run_build(release_setup, work, out), ready)
    final = run_build(release_setup, work, out)
    log, _ = final.communicate(timeout=600)
    got, ref = tree(out), tree(out_ref)
    fault_table(
        "command SIGKILLed x4 (each stage), re-run",
        "exit 0, same bytes",
        f"exit {final.returncode}, output identical: {got == ref}",
        lost_samples(got, ref),
    )
    assert final.returncode == 0, log
    assert "already committed" in log
    assert got == ref
    assert not list(out.rglob("*partial*")) and not list(work.rglob("*partial*"))


def test_killed_and_resumed_with_work_and_out_on_s3(release_setup, release_built, s3, tmp_path):
    """Killed twice, then resumed: the S3 release equals the local one, and the shards a
    killed process was staging for upload (in the host's temporary folder) are swept."""
    import s3fs

    from sarlo_dask.store import STAGING

    out_ref, _ = release_built
    fs = s3fs.S3FileSystem(**s3)
    (tmp_path / "tmp").mkdir()  # the builds' temporary folder: what they stage is seen here
    env = {"AWS_ENDPOINT_URL": s3["client_kwargs"]["endpoint_url"], "TMPDIR": str(tmp_path / "tmp")}

    def found(pattern: str):
        def ready() -> bool:
            fs.invalidate_cache()
            time.sleep(0.2)
            return bool(fs.glob(pattern))

        return ready

    for pattern in ("sarlo/work/tiles/*/*.meta.json", "sarlo/out/gen-*/*/chunk_*/*.done.json"):
        kill_when(
            run_build(release_setup, "s3://sarlo/work", "s3://sarlo/out", env), found(pattern)
        )
    staging = tmp_path / "tmp" / STAGING
    left = sorted(p.name for p in staging.glob("*")) if staging.exists() else []
    final = run_build(release_setup, "s3://sarlo/work", "s3://sarlo/out", env)
    log, _ = final.communicate(timeout=600)
    assert final.returncode == 0, log
    fs.invalidate_cache()
    remote = {p[len("sarlo/out/") :]: fs.cat_file(p) for p in fs.find("sarlo/out")}
    assert remote == tree(out_ref)
    assert staging.exists()  # the shards were staged there
    assert not list(staging.glob("*")), (left, sorted(p.name for p in staging.glob("*")))


def test_a_build_on_s3_gives_the_local_bytes(release_setup, release_built, client, s3):
    import s3fs

    _, urls, config = release_setup
    out_ref, _ = release_built
    result = build_dataset(
        urls, "s3://sarlo/work", "s3://sarlo/out", build_configs(config, s3), client
    )
    assert result.exit_code() == 0
    fs = s3fs.S3FileSystem(**s3)
    remote = {p[len("sarlo/out/") :]: fs.cat_file(p) for p in fs.find("sarlo/out")}
    assert remote == tree(out_ref)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 12), st.sampled_from(["urban", "water", "road"])),
        min_size=1,
        max_size=80,
    ),
    st.sampled_from([{"train": 0.8, "validation": 0.1, "test": 0.1}, {"train": 0.5, "test": 0.5}]),
)
def test_passes_go_whole_to_one_split_deterministically(rows, ratios):
    samples = [SampleRef("s", f"k{i}", f"pass{p}", lab) for i, (p, lab) in enumerate(rows)]
    a = split_passes(samples, ratios)
    assert a == split_passes(list(reversed(samples)), ratios)  # order of discovery is moot
    assert set(a) == {s.pass_id for s in samples} and set(a.values()) <= set(ratios)
    report = split_report(samples, a, ratios)
    assert sum(r["samples"] for r in report.values()) == len(samples)
    for r in report.values():
        assert r["label_distance"] is None or 0 <= r["label_distance"] <= 1


def test_equal_passes_follow_the_ratios_and_shards_follow_the_plan():
    from sarlo_dask.config import ReleaseConfig

    labels = ["urban", "water", "road", "forest"]
    samples = [
        SampleRef(f"scene{p:02d}", f"scene{p:02d}_a000_r{i:03d}", f"pass{p:02d}", labels[p % 4])
        for p in range(20)
        for i in range(5)
    ]
    ratios = {"train": 0.8, "validation": 0.1, "test": 0.1}
    a = split_passes(samples, ratios)
    assert Counter(a.values()) == {"train": 16, "validation": 2, "test": 2}
    cfg = ReleaseConfig(splits=ratios, samples_per_shard=7, shards_per_chunk=3)
    plan = shard_plan(samples, a, cfg)
    train = [s for s in plan if s.split == "train"]
    assert [s.path for s in train[:4]] == [
        "train/chunk_000/shard-00000.tar",
        "train/chunk_000/shard-00001.tar",
        "train/chunk_000/shard-00002.tar",
        "train/chunk_001/shard-00003.tar",
    ]
    keys = [k for s in train for _, k in s.keys]
    assert keys == sorted(keys) and len(keys) == 80


def test_a_bad_scene_is_reported_and_the_others_give_the_same_shards(
    release_setup, release_built, client, tmp_path
):
    _, urls, config = release_setup
    out_ref, _ = release_built
    empty = tmp_path / "empty_scene.nitf"
    empty.write_bytes(b"")
    work, out = tmp_path / "work", tmp_path / "out"
    result = build_dataset([*urls, str(empty)], str(work), str(out), build_configs(config), client)
    assert result.exit_code() == 3
    rows = [json.loads(line) for line in (work / "failures.jsonl").read_text().splitlines()]
    assert [(r["id"], r["kind"]) for r in rows] == [("empty_scene", "scene")]
    assert rows[0]["reason"] and rows[0]["stage"] and rows[0]["exception"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert [r["scene_id"] for r in manifest["catalogue"]["refused"]] == ["empty_scene"]
    shards = {k: v for k, v in tree(out).items() if k.endswith(".tar")}
    assert shards == {k: v for k, v in tree(out_ref).items() if k.endswith(".tar")}


def test_the_meta_schema_rejects_what_it_does_not_describe(release_built):
    """The schema is strict: a missing acquisition field, an unknown top-level field, a wrong
    type, another geometry type or an older schema version are each refused."""
    import copy

    from jsonschema import Draft202012Validator, ValidationError

    schema = Draft202012Validator(dataset.meta_schema())
    Draft202012Validator.check_schema(dataset.meta_schema())
    meta = next(dataset.iter_meta(str(release_built[0])))
    schema.validate(meta)
    broken = []
    for edit in (
        lambda m: m["acquisition"].pop("polarization"),
        lambda m: m.__setitem__("spacing", 0.8),
        lambda m: m.__setitem__("valid_fraction", "1.0"),
        lambda m: m["footprint"].__setitem__("type", "Point"),
        lambda m: m.__setitem__("schema_version", "1.0"),
    ):
        m = copy.deepcopy(meta)
        edit(m)
        with pytest.raises(ValidationError):
            schema.validate(m)
        broken.append(m)
    assert len(broken) == 5


def test_a_scene_whose_tiles_cannot_be_read_leaves_the_release_as_it_was(
    release_setup, release_built, client, tmp_path
):
    """An error reading one scene's tiles in the release step (not damage: the files are
    there, the read fails) is that scene's failure: nothing is published, the release that
    was there stays, and the driver goes on to report it instead of raising."""
    import shutil

    from sarlo_dask.pipeline import release_scenes

    root, _, config = release_setup
    work, out = tmp_path / "work", tmp_path / "out"
    shutil.copytree(root / "work", work)
    shutil.copytree(release_built[0], out)
    before = tree(out)
    scenes = sorted(p.name for p in (work / "tiles").iterdir() if p.is_dir())
    meta = sorted((work / "tiles" / scenes[0]).glob("*.meta.json"))[0]
    meta.unlink()
    meta.mkdir()  # listed as a tile's meta.json, unreadable as one
    rcfg = build_configs(config).release
    rel = release_scenes(str(work), str(out), rcfg, client, scenes)
    failed = {f.id: f for f in rel.errors}
    assert (
        failed[scenes[0]].stage == "release" and "IsADirectoryError" in failed[scenes[0]].exception
    )
    assert set(failed) == {scenes[0], "release"}  # the other scenes were read
    assert tree(out) == before


def test_a_scenes_tiles_start_as_soon_as_its_store_commits(release_setup, release_built):
    """The reference build streams: the first tile of a scene is written before the last
    scene's store is committed (its marker), not after every store as a stage barrier would
    have it; and the first caption before the last tile."""
    root = release_setup[0] / "work"
    markers = {p.name: p.stat().st_mtime for p in (root / "scenes").glob("*.done.json")}
    tiles = [p.stat().st_mtime for p in (root / "tiles").rglob("*.meta.json")]
    captions = [p.stat().st_mtime for p in (root / "captions").rglob("*.json")]
    assert len(markers) == 3 and tiles and captions
    assert min(tiles) < max(markers.values()), (min(tiles), markers)
    assert min(captions) < max(tiles)
