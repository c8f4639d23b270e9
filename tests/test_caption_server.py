"""Captions from a real OpenAI-compatible server: `transformers serve` on 127.0.0.1 serving the
tiny LLaVA built here (offline), behind a loopback proxy that logs every request and injects
faults, captioning tiles through the pool on the 2-worker cluster."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")

from sarlo_dask import dataset
from sarlo_dask.captions import tiny
from sarlo_dask.config import CaptionConfig
from sarlo_dask.stages.caption_pool import caption_tiles

from .faultproxy import FaultProxy, image_of, served_model
from .helpers import fresh_work, kept_keys

KEY = "sk-sarlo-test-0123456789abcdef"
"""the API key the tests hand the backend: it must reach the server and nothing else"""


@pytest.fixture(scope="module")
def vlm(tmp_path_factory):
    return tiny.build_llava(tmp_path_factory.mktemp("served") / "llava")


@pytest.fixture(scope="module")
def server(vlm, tmp_path_factory):
    """`transformers serve` with the tiny VLM on a free loopback port: its /v1 base URL."""
    proc, base = tiny.serve(vlm, tmp_path_factory.mktemp("serve") / "serve.log")
    yield base
    proc.terminate()
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:  # a loaded machine: stop it all the same
        proc.kill()
        proc.wait()


@pytest.fixture
def proxy(server):
    p = FaultProxy(server)
    yield p
    p.close()


def config(vlm, proxy, **kw) -> CaptionConfig:
    settings = {
        "model": vlm,
        "backend": "openai",
        "servers": (proxy.url,),
        "batch_size": 4,
        "request_timeout": 2.5,  # under the proxy's 5 s stall; over a queue of 8 answers
        "request_retries": 2,
        "api_key_env": "SARLO_TEST_CAPTION_KEY",
    }
    return CaptionConfig(**{**settings, **kw})


def records(work: str) -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in Path(work, "captions").glob("*/*.json")}


def caption(tiled, work, cfg, client):
    scene_id = tiled[3].scene_id
    return caption_tiles(work, cfg, client, {scene_id: kept_keys(work, scene_id)})[scene_id]


@pytest.fixture(autouse=True)
def api_key(monkeypatch, client):
    """The key in this process's and every worker's environment, as a user exports it."""
    monkeypatch.setenv("SARLO_TEST_CAPTION_KEY", KEY)
    client.run(lambda: os.environ.__setitem__("SARLO_TEST_CAPTION_KEY", KEY))


def test_every_tile_captioned_once_the_same_at_any_concurrency(tiled, vlm, proxy, client):
    served = served_model(proxy.url)
    runs = {}
    for concurrency in (1, 8):
        work = fresh_work(tiled, f"served_{concurrency}")
        proxy.reset()
        # a patient timeout: 8 requests at once on a busy 2-core machine may take over the
        # fault tests' 2.5 s, and a retry would count as a second request for the tile
        cfg = config(vlm, proxy, concurrency=concurrency, request_timeout=60.0)
        res = caption(tiled, work, cfg, client)
        n = len(kept_keys(work, tiled[3].scene_id))
        posts = proxy.posts()
        print(f"concurrency {concurrency}: {len(posts)} requests, {proxy.most_in_flight} at once")
        assert res.captioned == n and not res.errors and not res.uncaptioned
        # each kept tile once per prompt: 3 requests each, all answered 200, with the key
        images = [p.image for p in posts]
        assert len(images) == 3 * n and len(set(images)) == n
        assert all(p.answer == "200" and p.auth == f"Bearer {KEY}" for p in posts)
        # the build's bound: `concurrency` per server, shared by the 2 workers (each
        # ceil(concurrency / 2)); and the higher concurrency is used
        assert proxy.most_in_flight <= 2 * -(-concurrency // 2)
        assert concurrency == 1 or proxy.most_in_flight > 2
        got = records(work)
        assert all(r["model"] == served and r["caption"] for r in got.values())
        runs[concurrency] = got
        # a re-run asks nothing: every record is reused
        proxy.reset()
        assert caption(tiled, work, config(vlm, proxy), client).captioned == n
        assert proxy.posts() == []
    assert runs[1] == runs[8]


def test_server_faults_bounded_retries_reasons_and_a_rerun_fills_the_gaps(
    tiled, vlm, proxy, client, capfd
):
    """One tile per fault: 500, a stall past the timeout, a dropped connection and malformed
    JSON on every attempt, 429 + Retry-After once. Each failing tile: 3 attempts per prompt
    (retries 2), no caption, the reason and a transient failure; the 429 tile waits the
    second it was told and is captioned. A re-run without faults asks only for the failed
    tiles and gives the records of a clean run."""
    work = fresh_work(tiled, "served_faults")
    clean = fresh_work(tiled, "served_clean")
    scene_id = tiled[3].scene_id
    keys = kept_keys(work, scene_id)
    cfg = config(vlm, proxy)
    caption(tiled, clean, cfg, client)
    proxy.reset()
    from sarlo_dask.captions.openai_server import data_url

    def image_hash(key: str) -> str:
        from PIL import Image

        im = Image.open(Path(work, "tiles", scene_id, f"{key}.optic.png")).convert("RGB")
        body = json.dumps({"url": data_url(im)}).encode()
        return str(image_of(body))

    modes = {"500": -1, "stall": -1, "drop": -1, "malformed": -1, "429": 3}
    faulty = dict(zip(keys, modes, strict=False))
    proxy.faults = {image_hash(k): (m, modes[m]) for k, m in faulty.items()}
    res = caption(tiled, work, cfg, client)
    seen = proxy.posts()
    got = records(work)
    why = {
        "500": "HTTP 500 (3 attempts)",
        "stall": "no answer within 2.5 s (3 attempts)",
        "drop": "connection failed",
        "malformed": "an answer that is not chat-completion JSON (3 attempts)",
    }
    for key, mode in faulty.items():
        h = image_hash(key)
        tries = [s for s in seen if s.image == h]
        rec = got[f"{key}.json"]
        print(f"{mode}: {len(tries)} requests -> {rec['reason'] or 'captioned'}")
        if mode == "429":
            assert rec["caption"] and len(tries) == 6  # 3 prompts x (429, then answered)
            first = sorted(s.t for s in tries if s.answer == "429")
            then = sorted(s.t for s in tries if s.answer == "200")
            assert min(then) - min(first) >= 0.9  # Retry-After: 1 honoured
            continue
        assert len(tries) == 9 and {s.answer for s in tries} == {mode}  # 3 x 3 attempts
        assert rec["caption"] is None and rec["transient"] is True
        assert why[mode] in rec["reason"] and rec["caption_raw"] is None
    failed = {e.id for e in res.errors}
    assert failed == {k for k, m in faulty.items() if m != "429"}
    assert all(e.stage == "captions" for e in res.errors)
    # the re-run: only the failed tiles are asked for, and the records are a clean run's
    proxy.reset()
    again = caption(tiled, work, cfg, client)
    assert not again.errors
    asked = {s.image for s in proxy.posts()}
    assert asked == {image_hash(k) for k in failed} and len(proxy.posts()) == 3 * len(failed)
    assert records(work) == records(clean)
    # the key: sent to the server, in no file of {work} nor any log
    assert all(s.auth == f"Bearer {KEY}" for s in proxy.seen)
    for path in Path(work).rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path
    logs = json.dumps(client.get_worker_logs()) + json.dumps(client.get_scheduler_logs())
    out, err = capfd.readouterr()
    assert KEY not in logs + out + err


def test_same_samples_as_the_in_process_backend(tiled, scenes, vlm, proxy, client, tmp_path):
    """The same tiny model in the workers (transformers) and behind the server (openai):
    the same texts for every tile, and builds whose releases hold the same samples apart
    from the captions' provenance (the caption settings' digest)."""
    from sarlo_dask.build_config import BuildConfig
    from sarlo_dask.config import ReleaseConfig
    from sarlo_dask.pipeline import build_dataset

    from .helpers import small_scene_config

    served = fresh_work(tiled, "served_cmp")
    local = fresh_work(tiled, "local_cmp")
    backends = {served: config(vlm, proxy), local: CaptionConfig(model=vlm, batch_size=4)}
    for work, cfg in backends.items():
        caption(tiled, work, cfg, client)
    a, b = records(served), records(local)
    assert a.keys() == b.keys()
    for name in a:
        assert a[name]["caption_raw"] == b[name]["caption_raw"], name
        assert a[name]["caption"] == b[name]["caption"] and a[name]["label"] == b[name]["label"]
        assert a[name]["caption_config"] != b[name]["caption_config"]
    # the release of each: the build resumes (scene, tiles and captions reused) and releases
    outs = {}
    for work, cfg in backends.items():
        out = tmp_path / Path(work).name
        build = BuildConfig.of(small_scene_config(), tiled[2], cfg, ReleaseConfig())
        res = build_dataset([str(scenes["fine"])], work, str(out), build, client)
        assert res.exit_code() == 0, res
        outs[work] = out
    got = {w: samples_of(o) for w, o in outs.items()}
    assert got[served].keys() == got[local].keys() and got[served]
    for key, sample in got[served].items():
        other = got[local][key]
        assert sample.keys() == other.keys()
        for member, value in sample.items():
            if member == "__url__":  # where each was read from
                continue
            if member == "meta.json":
                p, q = value["provenance"], other[member]["provenance"]
                assert p.pop("caption_config") != q.pop("caption_config")
                assert value == other[member], key  # captions, label, model id, the rest
            elif isinstance(value, np.ndarray):
                assert np.array_equal(value, other[member]), (key, member)
            else:
                assert value == other[member], (key, member)


def samples_of(out: Path) -> dict[str, dict]:
    """Every sample of a release, by key (all splits)."""
    found = {}
    for split in dataset.SPLITS:
        if dataset.shard_urls(str(out), split):
            found |= {s["__key__"]: s for s in dataset.open(str(out), split)}
    return found


def test_preflight_refuses_a_server_without_the_model_or_the_key(vlm, proxy, monkeypatch):
    from sarlo_dask.stages.preflight import UsageError, check_caption_servers

    check_caption_servers(config(vlm, proxy))
    with pytest.raises(UsageError, match="not served by"):
        check_caption_servers(config("no-such-model", proxy))
    monkeypatch.delenv("SARLO_TEST_CAPTION_KEY")
    with pytest.raises(UsageError, match="SARLO_TEST_CAPTION_KEY is not set"):
        check_caption_servers(config(vlm, proxy))
    with pytest.raises(UsageError, match="does not answer"):
        dead = CaptionConfig(model=vlm, backend="openai", servers=("http://127.0.0.1:9/v1",))
        check_caption_servers(dead)


def test_a_tile_the_server_failed_is_released_only_once_captioned(
    tiled, scenes, vlm, proxy, client, tmp_path
):
    """A build during which the server fails one tile's requests: nothing published, exit 4
    as there is no release yet (no shard ships a caption still to come, and a release shrinks
    only through refusals);
    the re-run captions it and the release holds it, every shard's meta.json agreeing with
    index.parquet."""
    from sarlo_dask.build_config import BuildConfig
    from sarlo_dask.config import ReleaseConfig
    from sarlo_dask.pipeline import build_dataset

    from .helpers import small_scene_config

    work = fresh_work(tiled, "served_release")
    out = tmp_path / "out"
    scene_id = tiled[3].scene_id
    key = kept_keys(work, scene_id)[3]
    from PIL import Image

    from sarlo_dask.captions.openai_server import data_url

    im = Image.open(Path(work, "tiles", scene_id, f"{key}.optic.png")).convert("RGB")
    proxy.faults = {str(image_of(json.dumps({"url": data_url(im)}).encode())): ("500", -1)}
    args = ([str(scenes["fine"])], work, str(out))
    cfg = BuildConfig.of(small_scene_config(), tiled[2], config(vlm, proxy), ReleaseConfig())
    first = build_dataset(*args, cfg, client)
    assert first.exit_code() == 4 and any(e.id == key for t in first.tiles for e in t.errors)
    assert not (out / "manifest.json").exists()  # nothing published: no release without it
    assert "500" in {s.answer for s in proxy.posts()}  # the fault happened
    proxy.faults = {}
    again = build_dataset(*args, cfg, client)
    assert again.exit_code() == 0, again
    index = dataset.index(str(out)).to_pylist()
    assert key in {r["key"] for r in index}
    shipped = samples_of(out)
    for row in index:
        caption = shipped[row["key"]]["meta.json"]["caption"]
        assert caption and caption["MID"] == row["caption_mid"], row["key"]


def test_preflight_refuses_captions_of_an_optical_view_metadata_mode_does_not_make():
    from sarlo_dask.config import TileConfig
    from sarlo_dask.stages.preflight import UsageError, check_caption_image

    tiles = TileConfig(optical="tiles/", optical_mode="metadata")
    with pytest.raises(UsageError, match="makes no optical view to caption"):
        check_caption_image(tiles, CaptionConfig(model="m"))
    check_caption_image(tiles, CaptionConfig(model="m", image="sar"))
    check_caption_image(tiles, CaptionConfig())  # no captions: nothing to refuse
