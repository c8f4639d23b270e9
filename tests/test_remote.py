"""Remote scenes are read once: each byte of a scene served over HTTP (a loopback server that
answers range requests and counts what it sends) or S3 (moto, counting the same) is fetched
once per standardize, in a few large requests, whatever the number of workers."""

from __future__ import annotations

import os
import shutil

import pytest

from sarlo_dask.config import StandardizeConfig
from sarlo_dask.geometry.sicd import read_header
from sarlo_dask.pipeline import standardize_scenes
from sarlo_dask.stages.standardize import open_scene_store
from sarlo_dask.store import scene_store_url

from .helpers import same_store
from .rangeserver import RangeServer

CFG = StandardizeConfig(min_size=64, chunk_azimuth=256, chunk_range=256, store_chunk=128)
MIB4 = 4 * 2**20


@pytest.fixture(scope="module")
def served(scenes, tmp_path_factory):
    root = tmp_path_factory.mktemp("www")
    shutil.copy(scenes["fine_skew"], root / "fine_skew.nitf")
    srv = RangeServer(root)
    yield srv, root / "fine_skew.nitf"
    srv.close()


def test_a_header_is_a_few_small_requests(served):
    srv, path = served
    before = srv.traffic("/fine_skew.nitf")
    sicd, layout = read_header(f"{srv.url}/fine_skew.nitf")
    n, sent = (a - b for a, b in zip(srv.traffic("/fine_skew.nitf"), before, strict=True))
    assert layout.rows == sicd.ImageData.NumRows and layout.segments
    assert n <= 6 and sent <= 4 * 2**16, (n, sent)  # the file is 8 MB


@pytest.mark.parametrize("n_workers", [2, 3, 4])
def test_each_byte_of_a_remote_scene_is_fetched_once(served, s3, s3_server, tmp_path, n_workers):
    import s3fs
    from distributed import Client, LocalCluster

    srv, path = served
    size = os.path.getsize(path)
    s3fs.S3FileSystem(**s3).put(str(path), "sarlo/in/fine_skew.nitf")
    sources = {
        "http": (f"{srv.url}/fine_skew.nitf", lambda: srv.traffic("/fine_skew.nitf")),
        "s3": (
            "s3://sarlo/in/fine_skew.nitf",
            lambda: s3_server.traffic("/sarlo/in/fine_skew.nitf"),
        ),
    }
    with (
        LocalCluster(n_workers=n_workers, threads_per_worker=1, dashboard_address=":0") as c,
        Client(c) as client,
    ):
        local = tmp_path / "local"
        assert standardize_scenes([str(path)], str(local), CFG, client)[0].status == "done"
        reference = open_scene_store(scene_store_url(str(local), "fine_skew"))
        for name, (url, traffic) in sources.items():
            before = traffic()
            work = tmp_path / name  # s3:// reads go to moto through AWS_ENDPOINT_URL
            res = standardize_scenes([url], str(work), CFG, client)[0]
            n, sent = (a - b for a, b in zip(traffic(), before, strict=True))
            assert res.status == "done", res.reason
            assert sent <= 1.05 * size, (name, sent, size)
            assert n <= size / MIB4 + 20, (name, n)
            same_store(open_scene_store(scene_store_url(str(work), "fine_skew")), reference)
