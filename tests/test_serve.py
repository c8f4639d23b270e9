"""`sarlo serve`: the project's own OpenAI-compatible caption server, run as a user runs it
(the command, on a loopback port, serving the tiny LLaVA built here), batching the requests
that arrive together; the openai backend captions tiles through it on the 2-worker cluster."""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

from sarlo_dask.captions import tiny
from sarlo_dask.captions.interface import CaptionBackend, Generated
from sarlo_dask.captions.openai_server import data_url, request_body
from sarlo_dask.captions.serve import BATCH_HEADER
from sarlo_dask.config import CaptionConfig
from sarlo_dask.stages.caption_pool import caption_tiles

from .helpers import fresh_work, kept_keys


@pytest.fixture(scope="module")
def vlm(tmp_path_factory):
    return tiny.build_llava(tmp_path_factory.mktemp("sarlo_serve") / "llava")


@pytest.fixture(scope="module")
def server(vlm, tmp_path_factory):
    """`sarlo serve` with the tiny VLM, one torch thread, batches of up to 8."""
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    proc, base = tiny.serve(vlm, log, server="sarlo", opts=("--threads", "1", "--max-batch", "8"))
    yield base
    proc.terminate()
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _records(work: str) -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in Path(work, "captions").glob("*/*.json")}


def test_tiles_captioned_through_it_as_in_process(tiled, vlm, server, client):
    """Through the server (16 requests in flight): every kept tile captioned, each text the
    in-process backend's for the same tile, and the model answered requests in batches."""
    scene_id = tiled[3].scene_id
    runs = {}
    settings = {
        "served": CaptionConfig(
            model=vlm, backend="openai", servers=(server,), batch_size=8, concurrency=16,
            request_timeout=120,
        ),
        "local": CaptionConfig(model=vlm, batch_size=8),
    }  # fmt: skip
    for name, cfg in settings.items():
        work = fresh_work(tiled, f"sarlo_serve_{name}")
        res = caption_tiles(work, cfg, client, {scene_id: kept_keys(work, scene_id)})[scene_id]
        assert res.captioned == len(kept_keys(work, scene_id)) and not res.errors
        runs[name] = _records(work)
    assert runs["served"].keys() == runs["local"].keys() and runs["served"]
    for key, rec in runs["served"].items():
        assert rec["caption_raw"] == runs["local"][key]["caption_raw"], key
        assert rec["caption"] and rec["model"] == vlm


def _parts(**image_part) -> dict:
    """A request whose one image part is `image_part` (malformed as the case says)."""
    part = {"type": "image_url", **image_part}
    return {"messages": [{"role": "user", "content": [part, {"type": "text", "text": "x"}]}]}


def _big_png() -> str:
    """A data URL of a 5000 x 5000 PNG (a few kB: one colour)."""
    import base64
    import io

    buf = io.BytesIO()
    Image.new("L", (5000, 5000)).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _image(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8))


def test_requests_in_flight_together_share_a_batch(vlm, server):
    """Eight requests of one prompt sent at once: answered in batches of more than one,
    each the text the same image gets alone."""
    cfg = CaptionConfig(model=vlm, backend="openai", servers=(server,))
    prompt = cfg.prompts["SHORT"]

    def ask(seed: int) -> tuple[str, int]:
        body = request_body(cfg, data_url(_image(seed)), prompt)
        r = requests.post(f"{server}/chat/completions", json=body, timeout=120)
        assert r.status_code == 200, r.text
        return r.json()["choices"][0]["message"]["content"], int(r.headers[BATCH_HEADER])

    alone = [ask(seed) for seed in range(8)]
    assert all(batch == 1 for _, batch in alone)
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(ask, range(8)))
    assert max(batch for _, batch in together) > 1, together
    assert [text for text, _ in together] == [text for text, _ in alone]


@pytest.mark.parametrize(
    ("change", "status", "says"),
    [
        ({"model": "other"}, 404, "model 'other' is not served here"),
        ({"stream": True}, 400, "streaming is not served"),
        ({"temperature": 0.7}, 400, "only greedy decoding"),
        ({"messages": [{"role": "user", "content": "hello"}]}, 400, "holds no image"),
        ({"max_tokens": -3}, 400, "token limits"),
        ({"max_tokens": True}, 400, "token limits"),
        ({"max_tokens": 5000}, 400, "this server's --max-tokens"),
        ({"max_tokens": 4, "min_tokens": 8}, 400, "min_tokens <= max_tokens"),
        ({"max_completion_tokens": 0}, 400, "token limits"),
        ({"messages": [{"role": "user", "content": ["describe"]}]}, 400, "holds no image"),
        (_parts(image_url="data:image/png;base64,AAAA"), 400, "an image part holds"),
        (_parts(image_url=None), 400, "an image part holds"),
        (_parts(image_url={"url": "data:image/png;base64,!!"}), 400, "cannot be decoded"),
        (_parts(image_url={"url": _big_png()}), 400, "at most 4096^2"),
    ],
)
def test_a_request_it_cannot_answer_as_asked_is_refused_saying_why(
    vlm, server, change, status, says
):
    cfg = CaptionConfig(model=vlm, backend="openai", servers=(server,))
    body = {**request_body(cfg, data_url(_image(0)), cfg.prompts["SHORT"]), **change}
    r = requests.post(f"{server}/chat/completions", json=body, timeout=60)
    assert r.status_code == status and says in r.json()["error"]["message"], r.text


def test_a_missing_model_is_one_line_before_listening(tmp_path):
    res = subprocess.run(
        [str(Path(sys.executable).parent / "sarlo"), "serve", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 2, res
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "no such model folder" in lines[0], res.stderr
    assert "serving" not in res.stdout


def test_a_body_that_is_not_json_is_refused(server):
    r = requests.post(f"{server}/chat/completions", data=b"{not json", timeout=60)
    assert r.status_code == 400 and "not JSON" in r.json()["error"]["message"]


class _Short(CaptionBackend):
    """A backend whose first batch answers one text short, then answers every image."""

    uses_gpu = False

    def __init__(self) -> None:
        self.calls = 0

    @classmethod
    def get(cls, cfg, share=1):
        return cls()

    def generate(self, images, prompts):
        self.calls += 1
        n = len(images) - (self.calls == 1)
        return {k: [Generated(f"text {i}", "short") for i in range(n)] for k in prompts}


def test_a_failing_batch_is_its_requests_500_and_the_server_goes_on():
    """A backend that answers a batch wrongly: that request gets a 500 saying why (the fault
    happened: one text short), and the next request is answered (the batcher lives on)."""
    import asyncio
    import threading

    from aiohttp import web

    from sarlo_dask.captions.serve import make_app

    from .helpers import free_port

    backend, port = _Short(), free_port()
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(make_app(backend, "short", max_batch=4, wait_s=0.001))
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
    threading.Thread(target=loop.run_forever, daemon=True).start()
    base = f"http://127.0.0.1:{port}/v1"
    try:
        cfg = CaptionConfig(model="short", backend="openai", servers=(base,))
        body = request_body(cfg, data_url(_image(1)), cfg.prompts["SHORT"])
        first = requests.post(f"{base}/chat/completions", json=body, timeout=30)
        assert first.status_code == 500 and "0 texts for 1 images" in first.text, first.text
        second = requests.post(f"{base}/chat/completions", json=body, timeout=30)
        assert second.status_code == 200 and second.json()["choices"][0]["message"]["content"]
        assert backend.calls == 2
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
