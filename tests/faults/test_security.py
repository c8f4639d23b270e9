"""Secrets stay out of every output and log; scene names cannot lead paths out of {work}/{out}."""

from __future__ import annotations

import os
import posixpath
import re
import subprocess
import sys
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from sarlo_dask.geometry.tiles import Window
from sarlo_dask.io.readers import scene_id_from_url
from sarlo_dask.store import Store

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
    cmd = [sys.executable, "-m", "sarlo_dask.cli", "build", urls[-1]]
    cmd += ["--work", "s3://sarlo/work", "--out", "s3://sarlo/out", "--config", str(config)]
    cmd += ["--optical", f"{srv.url}?token={token}", "--workers", "2"]
    try:  # a missing input with a token: refused before any work, the token masked
        refused = subprocess.run(
            [*cmd[:5], missing, *cmd[5:]], capture_output=True, text=True, env=env, timeout=600
        )
        run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    finally:
        srv.close()
    assert refused.returncode == 2 and "missing.nitf?token=***: " in refused.stderr
    fs = s3fs.S3FileSystem(key=key, secret=secret, client_kwargs={"endpoint_url": endpoint})
    objects = {p: fs.cat_file(p) for p in fs.find("sarlo")}
    leaks = [p for p, data in objects.items() if any(s.encode() in data for s in SECRETS)]
    leaks += [
        f"{name} ({r.args[4]})"
        for r in (refused, run)
        for name in ("stdout", "stderr")
        if any(s in getattr(r, name) for s in SECRETS)
    ]
    fault_table(
        "S3 keys and a tile token in use",
        "in no log, meta, manifest or report",
        f"exit {run.returncode}; {len(objects)} objects scanned; leaks: {leaks or 'none'}",
        0,
    )
    assert run.returncode == 0, run.stdout + run.stderr
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


def _files_with(roots, secrets) -> list[str]:
    """Every file under `roots` holding one of `secrets`, and how many files were read."""
    found, n = [], 0
    for root in roots:
        for p in Path(root).rglob("*"):
            if p.is_file():
                n += 1
                data = p.read_bytes()
                found += [f"{p}: {s}" for s in secrets if s.encode() in data]
    return found, n


def test_http_credentials_never_stored_and_a_rotated_token_rebuilds_nothing(
    release_setup, tmp_path, fault_table
):
    """Scenes read over HTTP with basic auth (user:password@ in the URL) and with a token in
    the query: the servers get the credentials, no file under {work} or {out} and no line of
    the output holds them; the token rotated, the same build rebuilds nothing; a wrong password
    fails its scene with a one-line reason."""
    import base64

    from ..rangeserver import RangeServer

    _, urls, config = release_setup
    root = Path(urls[0]).parent
    password, token, token2 = "PaSsW0rdSECRET", "TOKENsecret111", "TOKENsecret222"
    basic = RangeServer(root, basic=("sarlo", password))
    query = RangeServer(root, token=token)
    header = base64.b64encode(f"sarlo:{password}".encode()).decode()
    secrets = (password, token, token2, header)
    work, out = tmp_path / "work", tmp_path / "out"

    def build(token_now: str, *extra: str) -> subprocess.CompletedProcess:
        inputs = [
            basic.url.replace("http://", f"http://sarlo:{password}@") + f"/{Path(urls[0]).name}",
            f"{query.url}/{Path(urls[2]).name}?token={token_now}",
        ]
        cmd = [sys.executable, "-m", "sarlo_dask.cli", "build", *inputs, *extra]
        cmd += ["--work", str(work), "--out", str(out), "--config", str(config)]
        return subprocess.run(cmd + ["--workers", "2"], capture_output=True, text=True, timeout=900)

    def stamps() -> dict[str, tuple[int, bytes]]:
        return {
            str(p): (p.stat().st_mtime_ns, p.read_bytes())
            for r in (work, out)
            for p in sorted(Path(r).rglob("*"))
            if p.is_file()
        }

    try:
        first = build(token)
        assert first.returncode == 0, first.stdout + first.stderr
        # the credentials were in use: each server saw them on every request it served
        assert basic.credentials and all(a == f"Basic {header}" for a, _ in basic.credentials)
        assert query.credentials and all(q == f"token={token}" for _, q in query.credentials)
        leaks, n = _files_with((work, out), secrets)
        leaks += [
            f"{s} in {name}"
            for name in ("stdout", "stderr")
            for s in secrets
            if s in getattr(first, name)
        ]
        assert n > 20 and not leaks, leaks
        before = stamps()
        seen = len(query.credentials)
        query.token = token2  # the token rotated: the server wants the new one
        again = build(token2)
        assert again.returncode == 0, again.stdout + again.stderr
        assert any(q == f"token={token2}" for _, q in query.credentials[seen:])
        assert "rebuilt" not in again.stdout and "standardized" not in again.stdout
        assert stamps() == before  # nothing rewritten: keys and digests hold no credentials
        leaks2 = [s for s in secrets if s in again.stdout + again.stderr]
        leaks2 += _files_with((work, out), secrets)[0]
        # a wrong password: refused before any work, one line naming the input, the password
        # masked
        wrong = subprocess.run(
            [sys.executable, "-m", "sarlo_dask.cli", "standardize", "--workers", "1",
             basic.url.replace("http://", "http://sarlo:WRONGpw@") + f"/{Path(urls[0]).name}",
             "--work", str(tmp_path / "w2"), "--config", str(config)],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
    finally:
        basic.close()
        query.close()
    refused = wrong.stderr.strip().splitlines()
    fault_table(
        "HTTP basic auth and a query token; token rotated",
        "no secret stored or printed; nothing rebuilt",
        f"{n} files scanned, leaks: {leaks + leaks2 or 'none'}; rotated: unchanged; "
        f"wrong password: exit {wrong.returncode}",
        0,
    )
    assert not leaks2, leaks2
    assert wrong.returncode == 2, wrong.stdout + wrong.stderr
    assert len(refused) == 1 and refused[0].startswith("error: input http://***@127.0.0.1:")
    assert refused[0].endswith("access denied (HTTP 401 Unauthorized): check the credentials")
    assert "dashboard" not in wrong.stdout  # no cluster started
    assert "WRONGpw" not in wrong.stdout + wrong.stderr
