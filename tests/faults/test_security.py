"""Secrets stay out of every output and log; scene names cannot lead paths out of {work}/{out}."""

from __future__ import annotations

import os
import posixpath
import re
import subprocess
import sys

from hypothesis import given
from hypothesis import strategies as st

from sarlo_dask.sicd import scene_id_from_url
from sarlo_dask.store import Store
from sarlo_dask.tiles import Window

from ..tileserver import TileServer

SECRETS = ("SARLOKEYID0123", "SARLOSECRET4567", "SARLOTOKEN8901")


def test_credentials_never_reach_logs_or_outputs(release_setup, s3, tmp_path, fault_table):
    import s3fs

    _, urls, config = release_setup
    srv = TileServer([])
    key, secret, token = SECRETS
    endpoint = s3["client_kwargs"]["endpoint_url"]
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": key,
        "AWS_SECRET_ACCESS_KEY": secret,
        "AWS_ENDPOINT_URL": endpoint,
        "HOME": str(tmp_path),  # the XYZ download cache goes under it
    }
    missing = srv.url.replace("{z}/{x}/{y}.png", f"missing.nitf?token={token}")
    cmd = [sys.executable, "-m", "sarlo_dask.cli", "build", urls[-1], missing]
    cmd += ["--work", "s3://sarlo/work", "--out", "s3://sarlo/out", "--config", str(config)]
    cmd += ["--optical", f"{srv.url}?token={token}", "--workers", "2"]
    try:
        run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    finally:
        srv.close()
    fs = s3fs.S3FileSystem(key=key, secret=secret, client_kwargs={"endpoint_url": endpoint})
    objects = {p: fs.cat_file(p) for p in fs.find("sarlo")}
    leaks = [p for p, data in objects.items() if any(s.encode() in data for s in SECRETS)]
    leaks += [
        name for name in ("stdout", "stderr") if any(s in getattr(run, name) for s in SECRETS)
    ]
    fault_table(
        "S3 keys and a tile token in use",
        "in no log, meta, manifest or report",
        f"exit {run.returncode}; {len(objects)} objects scanned; leaks: {leaks or 'none'}",
        0,
    )
    assert run.returncode == 3, run.stdout + run.stderr  # the missing input is refused
    # the secrets were in use: the token went to the tile server, the keys wrote the objects
    assert any(token in p for p in srv.paths) and objects
    assert any(p.endswith("failures.jsonl") for p in objects)
    assert any(p.endswith(".meta.json") for p in objects)
    assert not leaks


@given(name=st.text(min_size=0, max_size=40))
def test_scene_names_cannot_escape_work_or_out(name):
    scene_id = scene_id_from_url(f"s3://bucket/{name}.nitf")
    assert re.fullmatch(r"[A-Za-z0-9_-]+", scene_id)
    signed = scene_id_from_url(f"https://host/{name}.nitf?token=SECRET")
    assert "SECRET" not in signed and re.fullmatch(r"[A-Za-z0-9_-]+", signed)
    for url in (Store("/w").tile_dir(scene_id), Store("/w").scene_store(scene_id)):
        assert posixpath.normpath(url).startswith("/w/") and ".." not in url.split("/")
    key = Window(scene_id, 3, 4, 1536, 2048, 1024).key  # tar member names start with it
    assert re.fullmatch(r"[A-Za-z0-9_-]+", key) and key.startswith(scene_id)
