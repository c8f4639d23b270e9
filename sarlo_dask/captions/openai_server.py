"""Captions from OpenAI-compatible inference servers (vLLM, SGLang, LMDeploy, TGI,
`transformers serve`): `/chat/completions` requests with the image as a data URL.

Each worker process keeps one asyncio loop (in a thread of its own) and one HTTP session, and
sends every request of a caption batch at once, at most `ceil(concurrency / share)` in flight
per server from this process, so that the build as a whole keeps about `concurrency` per
server. Greedy decoding (temperature 0, a fixed seed): a request depends only on the image
and the prompt, never on what else was in flight (a server that batches requests, vLLM or
SGLang, may still not be batch-invariant in its floating point). A request that fails (an
answer in RETRY_STATUS, no answer within the timeout, a dropped connection, an answer that
is not chat-completion JSON) is retried with backoff on the next server, honouring
Retry-After, at most `request_retries` times; then the tile gets no caption, with the
reason, and a re-run asks again. The API key is read from the environment variable
`api_key_env` when a request is sent: it is never stored, logged or part of a reason.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import io
import json
import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from sarlo_dask.captions.interface import CaptionBackend, Generated
from sarlo_dask.config import CaptionConfig, PromptSpec
from sarlo_dask.driver.retry import retry_after
from sarlo_dask.errors import redact

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
"""answers worth asking again (overloaded, restarting, timed out upstream)"""


def api_key(cfg: CaptionConfig) -> str | None:
    """The key from cfg.api_key_env (None without one); a one-line error if it is unset."""
    if not cfg.api_key_env:
        return None
    key = os.environ.get(cfg.api_key_env)
    if not key:
        raise ValueError(
            f"captions.api_key_env: the environment variable {cfg.api_key_env} is not set "
            "(it holds the caption servers' API key)"
        )
    return key


def data_url(image: Any, fmt: str = "png", size: int | None = None) -> str:
    """A PIL image as a data URL, its longest side brought to `size` first if given."""
    from PIL import Image

    if size and max(image.size) != size:
        scale = size / max(image.size)
        shape = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(shape, Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    image.save(
        buf, "JPEG" if fmt == "jpeg" else "PNG", **({"quality": 95} if fmt == "jpeg" else {})
    )
    return f"data:image/{fmt};base64,{base64.b64encode(buf.getvalue()).decode()}"


def request_body(cfg: CaptionConfig, url: str, prompt: PromptSpec) -> dict[str, Any]:
    """The chat-completion request for one image and prompt."""
    body: dict[str, Any] = {
        "model": cfg.model,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": url}},
                    {"type": "text", "text": prompt.text},
                ],
            }
        ],
        "max_tokens": prompt.max_new_tokens,
        "temperature": 0,
        "seed": cfg.seed,
    }
    if prompt.min_new_tokens:
        body["min_tokens"] = prompt.min_new_tokens  # vLLM's and SGLang's extension
    return body


def parse_answer(raw: bytes) -> tuple[str, str | None]:
    """(text, model id) of a chat-completion answer; ValueError if it is not one."""
    try:
        doc = json.loads(raw)
        text = doc["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise ValueError("an answer that is not chat-completion JSON") from exc
    if not isinstance(text, str):
        raise ValueError("an answer whose message content is not text")
    model = doc.get("model")
    return " ".join(text.split()), model if isinstance(model, str) else None


class OpenAIBackend(CaptionBackend):
    """This process's client of the caption servers (see the module's docstring)."""

    uses_gpu = False
    remote = True
    _made: ClassVar[dict[tuple[Any, ...], OpenAIBackend]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, cfg: CaptionConfig, share: int = 1) -> None:
        api_key(cfg)  # a missing key is an error now, not one per request
        self.cfg = cfg
        self.limit = max(1, -(-cfg.concurrency // max(1, share)))
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, name="sarlo-captions", daemon=True).start()
        self.session: Any = None
        self.slots: dict[str, asyncio.Semaphore] = {}
        self.sent = 0
        atexit.register(self.close)

    @classmethod
    def get(cls, cfg: CaptionConfig, share: int = 1) -> OpenAIBackend:
        key = (cfg.model_dump_json(), share)
        with cls._lock:
            if key not in cls._made:
                cls._made[key] = cls(cfg, share)
            return cls._made[key]

    def generate(
        self, images: Sequence[Any], prompts: Mapping[str, PromptSpec]
    ) -> dict[str, list[Generated]]:
        urls = [data_url(im, self.cfg.image_format, self.cfg.image_size) for im in images]
        jobs = [(kind, p, u) for kind, p in prompts.items() for u in urls]
        done = asyncio.run_coroutine_threadsafe(self._all(jobs), self.loop).result()
        out: dict[str, list[Generated]] = {kind: [] for kind in prompts}
        for (kind, _, _), result in zip(jobs, done, strict=True):
            out[kind].append(result)
        return out

    async def _all(self, jobs: list[tuple[str, PromptSpec, str]]) -> list[Generated]:
        if self.session is None:
            import aiohttp

            self.session = aiohttp.ClientSession()
            self.slots = {s: asyncio.Semaphore(self.limit) for s in self.cfg.servers}
        return list(await asyncio.gather(*(self._one(u, p) for _, p, u in jobs)))

    async def _one(self, url: str, prompt: PromptSpec) -> Generated:
        import aiohttp

        cfg, servers = self.cfg, self.cfg.servers
        body = json.dumps(request_body(cfg, url, prompt)).encode()
        key = api_key(cfg)
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        first = self.sent
        self.sent += 1
        why = ""
        for attempt in range(cfg.request_retries + 1):
            server = servers[(first + attempt) % len(servers)]
            hint = None
            async with self.slots[server]:
                try:
                    async with self.session.post(
                        f"{server.rstrip('/')}/chat/completions",
                        data=body,
                        headers=headers,
                        timeout=aiohttp.ClientTimeout(total=cfg.request_timeout),
                    ) as r:
                        raw, status = await r.read(), r.status
                        hint = r.headers.get("Retry-After")
                except TimeoutError:
                    status, why = 0, f"no answer within {cfg.request_timeout:g} s"
                except aiohttp.ClientError as exc:
                    status, why = 0, f"connection failed ({type(exc).__name__})"
            if status == 200:
                try:
                    text, model = parse_answer(raw)
                    return Generated(text or None, model or str(cfg.model), _empty(text))
                except ValueError as exc:
                    why = str(exc)
            elif status:
                why = f"HTTP {status}"
                if status not in RETRY_STATUS:
                    break  # refused as asked: asking again the same way changes nothing
            if attempt < cfg.request_retries:
                await asyncio.sleep(retry_after(hint if status else None, attempt))
        where = redact(server)
        tries = attempt + 1
        return Generated(
            None, str(cfg.model), f"caption server {where}: {why} ({tries} attempts)", True
        )

    def close(self) -> None:
        """Close the HTTP session and stop the loop (at exit)."""
        if self.session is not None and self.loop.is_running():
            fut = asyncio.run_coroutine_threadsafe(self.session.close(), self.loop)
            try:
                fut.result(5)
            except Exception:  # noqa: BLE001 - closing at exit; nothing left to tell
                pass
        self.loop.call_soon_threadsafe(self.loop.stop)


def _empty(text: str) -> str | None:
    return None if text else "the server answered an empty text"
