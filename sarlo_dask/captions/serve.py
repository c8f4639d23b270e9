"""A caption model served over the OpenAI chat-completions API, batching the requests that
arrive together: `sarlo serve MODEL`.

For a node that holds a GPU (or a CPU box) and no vLLM: the in-process transformers backend
answers `/v1/chat/completions` requests of the form the
`openai` backend sends (one image as a data URL, one text prompt, greedy decoding), and
`/v1/models`. Requests waiting together with the same prompt and limits go to the model as
one batch (up to `max_batch` images), so that many clients' requests in flight cost about
what the in-process backend's batches cost. One batch runs at a time, in a thread of its
own; the event loop keeps reading requests meanwhile. A request the server cannot answer as
asked (no image, sampling, streaming, another model) is a 400 or 404 saying why.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from sarlo_dask.captions.interface import CaptionBackend, Generated
from sarlo_dask.config import PromptSpec

BATCH_HEADER = "X-Sarlo-Batch"
"""an answer's header: how many requests the model answered in the same batch"""


class BadRequest(ValueError):
    """A request this server does not answer, and why (the HTTP status with it)."""

    def __init__(self, why: str, status: int = 400) -> None:
        super().__init__(why)
        self.status = status


@dataclass(eq=False)  # a request is itself: compared by identity, never by pixels
class Job:
    """One request waiting for its batch."""

    prompt: PromptSpec
    image: Any
    done: asyncio.Future[tuple[Generated, int]] = field(repr=False)
    """its text and the size of the batch it ran in"""


MAX_PIXELS = 4096 * 4096
"""the largest image answered (a tile is 1024 px a side): a bigger one is refused before it
is decoded"""


def _image(url: Any) -> Any:
    from PIL import Image, UnidentifiedImageError

    head, sep, data = url.partition(",") if isinstance(url, str) else ("", "", "")
    if not (sep and head.startswith("data:image/") and head.endswith(";base64")):
        raise BadRequest("the image is not a base64 data URL (data:image/...;base64,...)")
    try:
        image = Image.open(io.BytesIO(base64.b64decode(data, validate=True)))
        if image.width * image.height > MAX_PIXELS:
            raise BadRequest(f"the image is {image.width} x {image.height} px (at most 4096^2)")
        return image.convert("RGB")
    except (binascii.Error, UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise BadRequest(f"the image cannot be decoded ({type(exc).__name__})") from None


def _count(doc: dict[str, Any], *names: str, default: int) -> int:
    """A token count the request gives under the first of `names` it holds, else `default`."""
    value = next((doc[n] for n in names if doc.get(n) is not None), default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BadRequest(f"token limits: {names[0]} must be a whole number >= 0, not {value!r}")
    return value


def parse_request(doc: Any, served: str, max_tokens: int = 1024) -> tuple[PromptSpec, Any]:
    """(the prompt, the PIL image) of a chat-completion request; BadRequest if it is not one
    this server answers as asked (`max_tokens`: the most a request may ask for)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("messages"), list):
        raise BadRequest("not a chat-completion request (no messages)")
    if doc.get("model") not in (None, served):
        raise BadRequest(f"model {doc.get('model')!r} is not served here ({served!r} is)", 404)
    if doc.get("stream"):
        raise BadRequest("streaming is not served: ask with stream false")
    if doc.get("temperature") not in (0, None) or doc.get("n") not in (1, None):
        raise BadRequest("only greedy decoding is served (temperature 0, n 1)")
    users = [m for m in doc["messages"] if isinstance(m, dict) and m.get("role") == "user"]
    content = users[-1].get("content") if users else None
    if not isinstance(content, list) or not all(isinstance(p, dict) for p in content):
        raise BadRequest("the user message holds no image (content must be a list of parts)")
    images = [p.get("image_url") for p in content if p.get("type") == "image_url"]
    texts = [p.get("text") for p in content if p.get("type") == "text"]
    if len(images) != 1:
        raise BadRequest(f"a caption request holds one image, not {len(images)}")
    if not isinstance(images[0], dict) or not all(isinstance(t, str) for t in texts):
        raise BadRequest("an image part holds {'url': ...} and a text part a string")
    most = _count(doc, "max_completion_tokens", "max_tokens", default=64)
    least = _count(doc, "min_tokens", default=0)
    if not 1 <= most <= max_tokens or least > most:
        raise BadRequest(
            f"token limits: 1 <= max_tokens <= {max_tokens} (this server's --max-tokens) and "
            f"min_tokens <= max_tokens, not {most} and {least}"
        )
    prompt = PromptSpec(text=" ".join(texts), max_new_tokens=most, min_new_tokens=least)
    return prompt, _image(images[0].get("url"))


def answer(text: str, served: str, n: int) -> dict[str, Any]:
    """The chat-completion answer of one request."""
    return {
        "id": f"chatcmpl-{n}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": served,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
        ],
    }


class Batcher:
    """Collects waiting requests into batches of one prompt each and runs them, one batch at
    a time, on the backend in a thread."""

    def __init__(self, backend: CaptionBackend, max_batch: int, wait_s: float) -> None:
        self.backend, self.max_batch, self.wait_s = backend, max_batch, wait_s
        self.queue: asyncio.Queue[Job] = asyncio.Queue()
        self.pending: list[Job] = []
        self.model_thread = ThreadPoolExecutor(1, thread_name_prefix="sarlo-serve")

    async def _next(self) -> list[Job]:
        """The oldest waiting request's prompt: up to max_batch requests with it."""
        if not self.pending:
            self.pending.append(await self.queue.get())
        deadline = asyncio.get_running_loop().time() + self.wait_s
        while True:
            while not self.queue.empty():
                self.pending.append(self.queue.get_nowait())
            first = self.pending[0].prompt
            same = [j for j in self.pending if j.prompt == first][: self.max_batch]
            left = deadline - asyncio.get_running_loop().time()
            if len(same) >= self.max_batch or left <= 0:
                break
            try:
                self.pending.append(await asyncio.wait_for(self.queue.get(), left))
            except TimeoutError:
                pass
        self.pending = [j for j in self.pending if j not in same]
        return same

    async def run(self) -> None:
        """Batches until cancelled; a batch's failure (the backend's error, or texts that do
        not match its images) is each of its requests' answer, never the end of the loop."""
        loop = asyncio.get_running_loop()
        while True:
            jobs = await self._next()
            try:
                images, prompts = [j.image for j in jobs], {"p": jobs[0].prompt}
                out = await loop.run_in_executor(
                    self.model_thread, self.backend.generate, images, prompts
                )
                texts = list(out["p"])
                if len(texts) != len(jobs):
                    raise RuntimeError(f"{len(texts)} texts for {len(jobs)} images")
                results: list[tuple[Generated, int] | Exception]
                results = [(g, len(jobs)) for g in texts]
            except asyncio.CancelledError:
                _fail(jobs, RuntimeError("the server is stopping"))
                raise
            except Exception as exc:  # noqa: BLE001 - the batch's requests get the error
                results = [exc] * len(jobs)
            for job, result in zip(jobs, results, strict=True):
                if job.done.done():
                    continue  # the client went away
                if isinstance(result, Exception):
                    job.done.set_exception(result)
                else:
                    job.done.set_result(result)


def _fail(jobs: list[Job], exc: Exception) -> None:
    for job in jobs:
        if not job.done.done():
            job.done.set_exception(exc)


def make_app(
    backend: CaptionBackend,
    served: str,
    max_batch: int = 8,
    wait_s: float = 0.005,
    max_tokens: int = 1024,
    banner: str = "",
) -> Any:
    """The aiohttp application serving `backend` as model `served` (`banner`: printed once
    it listens)."""
    from aiohttp import web

    batcher = Batcher(backend, max_batch, wait_s)
    count = iter(range(1 << 62))

    def error(why: str, status: int) -> web.Response:
        kind = "invalid_request_error" if status < 500 else "server_error"
        return web.json_response({"error": {"message": why, "type": kind}}, status=status)

    async def completions(request: web.Request) -> web.Response:
        try:
            doc = await request.json()
        except ValueError:
            return error("the body is not JSON", 400)
        try:
            prompt, image = parse_request(doc, served, max_tokens)
        except BadRequest as exc:
            return error(str(exc), exc.status)
        job = Job(prompt, image, asyncio.get_running_loop().create_future())
        batcher.queue.put_nowait(job)
        try:
            got, batch = await job.done
        except Exception as exc:  # noqa: BLE001 - the model failed on this batch
            return error(f"the model failed: {type(exc).__name__}: {exc}", 500)
        if got.text is None:
            return error(got.reason or "no text", 500)
        headers = {BATCH_HEADER: str(batch)}
        return web.json_response(answer(got.text, served, next(count)), headers=headers)

    async def models(request: web.Request) -> web.Response:
        entry = {"id": served, "object": "model", "owned_by": "sarlo-dask"}
        return web.json_response({"object": "list", "data": [entry]})

    running: list[asyncio.Task[None]] = []

    async def start(app: web.Application) -> None:
        running.append(asyncio.get_running_loop().create_task(batcher.run()))

    async def listening(app: web.Application) -> None:
        if banner:
            print(banner, flush=True)  # the port is bound: clients may come

    async def stop(app: web.Application) -> None:
        running[0].cancel()
        _fail(batcher.pending, RuntimeError("the server is stopping"))
        batcher.model_thread.shutdown(wait=False, cancel_futures=True)

    app = web.Application(client_max_size=64 << 20)
    app.router.add_post("/v1/chat/completions", completions)
    app.router.add_get("/v1/models", models)
    app.on_startup.append(start)
    app.on_startup.append(listening)
    app.on_cleanup.append(stop)
    return app


def serve(
    backend: CaptionBackend,
    served: str,
    host: str,
    port: int,
    max_batch: int,
    wait_s: float,
    max_tokens: int = 1024,
) -> None:
    """Serve until interrupted (Ctrl-C, SIGTERM)."""
    from aiohttp import web

    banner = f"serving {served} on http://{host}:{port}/v1 (batches of up to {max_batch})"
    app = make_app(backend, served, max_batch, wait_s, max_tokens, banner)
    web.run_app(app, host=host, port=port, print=None)
