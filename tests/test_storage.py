"""One `storage:` section for every URL of a build: options for all, and per URL prefix.
Two moto S3 servers on 127.0.0.1: the scenes on one, {work} on the other; `sarlo
standardize` reaches each with its own options, as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import s3fs
import yaml

from sarlo_dask.config import StandardizeConfig, TileConfig
from sarlo_dask.storage_config import StorageConfig

SARLO = str(Path(sys.executable).parent / "sarlo")
KEY, SECRET = "SARLOTESTKEY7Q", "SARLOTESTSECRET9Z"
"""the scenes server's credentials: distinctive, so a leak of them is found"""


def test_the_longest_prefix_wins_over_the_sections_key_over_the_options():
    storage = StorageConfig(
        options={"anon": False, "a": 1, "client_kwargs": {"region_name": "eu"}},
        urls={
            "s3://b/": {"anon": True},
            "s3://b/private": {"anon": False, "profile": "p"},
            "s3://c": {"client_kwargs": {"endpoint_url": "http://127.0.0.1:1"}},
        },
    )
    eu = {"client_kwargs": {"region_name": "eu"}}
    assert storage.for_url("s3://x/y", {"a": 2}) == {"anon": False, "a": 2, **eu}
    assert storage.for_url("s3://b/x", {"anon": False}) == {"anon": True, "a": 1, **eu}
    assert storage.for_url("s3://b/private/x")["profile"] == "p"
    assert storage.for_url("s3://b/private")["profile"] == "p"  # the prefix itself
    assert "profile" not in storage.for_url("s3://b/privateer/x")  # at a path boundary
    assert storage.for_url("s3://b2/x")["anon"] is False  # s3://b is not s3://b2
    both = {"region_name": "eu", "endpoint_url": "http://127.0.0.1:1"}  # merged key by key
    assert storage.for_url("s3://c/x")["client_kwargs"] == both
    assert storage.for_url("https://tiles.example/x") == {}  # a web server takes none
    with pytest.raises(ValueError, match="an empty prefix"):
        StorageConfig(urls={" ": {}})
    assert "eu" not in repr(storage) and "eu" not in repr(StandardizeConfig(storage=storage))


def test_a_build_opens_its_work_with_both_sections_keys_together():
    """standardize.storage_options alone, tiles' alone, or both agreeing: one set of options
    for {work}; both giving one option different values: refused (see the CLI test)."""
    from sarlo_dask.build_config import BuildConfig
    from sarlo_dask.config import CaptionConfig, ReleaseConfig
    from sarlo_dask.stages.preflight import UsageError, build_stores

    def work_options(url, scene, tiles):
        build = BuildConfig.of(scene, tiles, CaptionConfig(), ReleaseConfig())
        work, out = build_stores(build, url, "s3://w/out")
        assert out.options == {}  # the release section gives {out} nothing here
        return work.options

    s3 = {"key": "k", "secret": "s"}
    scene, tiles = StandardizeConfig(storage_options=s3), TileConfig()
    assert work_options("s3://w/work", scene, tiles) == s3
    assert work_options("s3://w/work", StandardizeConfig(), TileConfig(storage_options=s3)) == s3
    extra = TileConfig(storage_options={"key": "k", "anon": False})
    assert work_options("s3://w/work", scene, extra) == {**s3, "anon": False}
    with pytest.raises(UsageError, match=r"different options \(key\)"):
        work_options("s3://w/work", scene, TileConfig(storage_options={"key": "other"}))


def test_one_build_config_gives_every_section_the_one_storage_section(tmp_path):
    """A build YAML read once into BuildConfig: every section reads the same storage section
    (so {work}, {out}, inputs and the DEM get their options from one place), flags override
    per section, a bad setting is named with its section, secrets stay out of its repr."""
    from pydantic import ValidationError

    from sarlo_dask.build_config import BuildConfig
    from sarlo_dask.config import CaptionConfig, ReleaseConfig

    path = tmp_path / "build.yaml"
    path.write_text(
        "standardize: {min_size: 64}\ntiles: {size: 256, stride: 256}\n"
        "storage:\n  options: {key: SECRETKEY1}\n  urls:\n    s3://out: {profile: p}\n"
    )
    build = BuildConfig.load(path, tiles={"zoom": 17, "optical": None})
    assert (build.tiles.zoom, build.tiles.size, build.standardize.min_size) == (17, 256, 64)
    assert build.standardize.storage is build.tiles.storage is build.release.storage
    assert build.storage is build.release.storage
    assert build.work_store("s3://w/work").options == {"key": "SECRETKEY1"}
    assert build.out_store("s3://out/r").options == {"key": "SECRETKEY1", "profile": "p"}
    assert build.standardize.storage.for_url("s3://scenes/a.nitf") == {"key": "SECRETKEY1"}
    assert "SECRETKEY1" not in repr(build) and "SECRETKEY1" not in str(build)
    assert "SECRETKEY1" not in build.model_dump_json()
    bad = tmp_path / "bad.yaml"  # an error about the storage section shows none of it
    bad.write_text("storage:\n  options: {key: SECRETKEY2}\n  urls: {' ': {key: SECRETKEY3}}\n")
    with pytest.raises(ValidationError, match="empty prefix") as refused:
        BuildConfig.load(bad)
    assert "SECRETKEY" not in str(refused.value)
    with pytest.raises(ValidationError, match=r"tiles\.zoom"):
        BuildConfig.load(path, tiles={"zoom": "high"})
    with pytest.raises(ValueError, match="unknown sections"):
        BuildConfig.load(path, dem={"x": 1})
    # sections made in code with two storage sections: a build has one, so refused
    other = StandardizeConfig(storage=StorageConfig(options={"anon": True}))
    with pytest.raises(ValidationError, match="different storage sections"):
        BuildConfig.of(other, TileConfig(), CaptionConfig(), ReleaseConfig())
    # given at the top, it reaches every section
    one = StorageConfig(options={"anon": True})
    given = BuildConfig(standardize=other, storage=one)
    assert given.tiles.storage == given.release.storage == one


@pytest.fixture
def other_s3():
    """A second S3 server in a process of its own (moto's `moto_server`: its own buckets,
    which the tests' server does not share): its URL."""
    import time

    import requests

    from .helpers import free_port

    port = free_port()
    exe = str(Path(sys.executable).parent / "moto_server")
    proc = subprocess.Popen(
        [exe, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            requests.get(f"{url}/moto-api/", timeout=2)
            break
        except requests.RequestException:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("moto_server did not start") from None
            time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(30)


def _yaml(path: Path, settings: dict) -> Path:
    path.write_text(yaml.safe_dump(settings))
    return path


def test_inputs_and_work_on_two_servers_each_with_its_own_options(scenes, s3, other_s3, tmp_path):
    """The scene on one server, {work} on another: `storage.urls` sends the scene's reads to
    its server, `storage.options` the rest to the default one; without the prefix the same
    command cannot find the scene (the options really route the reads)."""
    there = {"key": KEY, "secret": SECRET, "client_kwargs": {"endpoint_url": other_s3}}
    fs = s3fs.S3FileSystem(**there)
    fs.mkdir("scenes")
    fs.put(str(scenes["coarse"]), "scenes/coarse.nitf")
    assert not s3fs.S3FileSystem(**s3).exists("scenes/coarse.nitf")  # on its server only
    std = {"min_size": 64, "chunk_azimuth": 256, "chunk_range": 256, "store_chunk": 128}
    routed = {"storage": {"options": s3, "urls": {"s3://scenes": there}}, "standardize": std}
    cmd = [SARLO, "standardize", "s3://scenes/coarse.nitf", "--work", "s3://sarlo/work"]
    cmd += ["--workers", "2"]
    # no default endpoint in the environment: {work} is reached through storage.options only
    env = {k: v for k, v in os.environ.items() if k != "AWS_ENDPOINT_URL"}

    def run(config: Path) -> subprocess.CompletedProcess:
        args = [*cmd, "--config", str(config)]
        return subprocess.run(args, capture_output=True, text=True, timeout=600, env=env)

    res = run(_yaml(tmp_path / "routed.yaml", routed))
    assert res.returncode == 0, res.stdout + res.stderr
    work = s3fs.S3FileSystem(**s3)
    assert work.exists("sarlo/work/scenes/coarse.done.json")
    assert not s3fs.S3FileSystem(**there).exists("sarlo")  # {work} is not on the scenes server
    written = [work.cat_file(f) for f in work.find("sarlo/work") if f.endswith(".json")]
    for text in [res.stdout, res.stderr, *(b.decode() for b in written)]:
        assert KEY not in text and SECRET not in text  # the credentials: in no line, no file

    plain = {"storage": {"options": s3}, "standardize": std}  # no prefix for the scenes
    res = run(_yaml(tmp_path / "plain.yaml", plain))
    assert res.returncode == 2, res.stdout + res.stderr
    assert "input s3://scenes/coarse.nitf" in res.stderr, res.stderr


def test_a_build_refuses_two_sets_of_options_for_its_work_before_any_cluster(tmp_path):
    """tiles.storage_options other than standardize.storage_options for {work}: one line
    naming both keys, exit 2 (a build opens {work} once; they were silently ignored)."""
    settings = {
        "standardize": {"storage_options": {"anon": True}},
        "tiles": {"storage_options": {"anon": False}},
    }
    res = subprocess.run(
        [SARLO, "build", str(tmp_path / "in.nitf"), "--work", str(tmp_path / "w"), "--out",
         str(tmp_path / "o"), "--config", str(_yaml(tmp_path / "b.yaml", settings))],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 2, res.stdout + res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert "standardize.storage_options and tiles.storage_options" in lines[0]
    assert "different options (anon)" in lines[0]
    assert not (tmp_path / "w").exists()


def test_each_section_of_a_build_yaml_gets_the_one_storage_section(tmp_path):
    from sarlo_dask.config import load_config, load_release_config, load_tile_config

    path = _yaml(tmp_path / "b.yaml", {"storage": {"urls": {"s3://x/": {"anon": True}}}})
    for cfg in (load_config(path), load_tile_config(path), load_release_config(path)):
        assert cfg.storage.for_url("s3://x/y") == {"anon": True}
        assert "storage" not in cfg.model_dump()  # in no record, no digest
    assert load_config(path).digest() == StandardizeConfig().digest()
    assert load_tile_config(path).digest() == TileConfig().digest()
    bad = _yaml(tmp_path / "bad.yaml", {"standardize": {"storage": {"options": {}}}})
    with pytest.raises(ValueError, match="unknown setting standardize.storage"):
        load_config(bad)
