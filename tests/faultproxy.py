"""An HTTP proxy on 127.0.0.1 in front of a real server: it forwards every request, logs what
it saw (time, path, the Authorization header, the image the request carries, the status it
answered, requests in flight) and injects faults per image: HTTP 500, a stall, a dropped
connection, malformed JSON, or 429 with Retry-After."""

from __future__ import annotations

import hashlib
import http.client
import json
import re
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlsplit

from .helpers import LoopbackHTTPServer


@dataclass
class Seen:
    t: float
    path: str
    auth: str | None
    image: str | None
    """sha256 of the data URL the request carries (None: no image)"""
    answer: str
    """the status forwarded, or the fault injected"""


def image_of(body: bytes) -> str | None:
    m = re.search(rb'"url":\s*"(data:image/[^"]+)"', body)
    return hashlib.sha256(m.group(1)).hexdigest() if m else None


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        target = urlsplit(upstream)
        self.faults: dict[str, tuple[str, int]] = {}  # image -> (mode, times; -1: always)
        self.seen: list[Seen] = []
        self.in_flight = self.most_in_flight = 0
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                image = image_of(body)
                with proxy.lock:
                    proxy.in_flight += 1
                    proxy.most_in_flight = max(proxy.most_in_flight, proxy.in_flight)
                    mode = proxy._take(image)
                try:
                    answer = self._answer(mode, body)
                finally:
                    with proxy.lock:
                        proxy.in_flight -= 1
                        auth = self.headers.get("Authorization")
                        proxy.seen.append(Seen(time.time(), self.path, auth, image, answer))

            def _answer(self, mode: str | None, body: bytes) -> str:
                if mode == "500":
                    self._send(500, b'{"error": "injected"}')
                elif mode == "429":
                    self._send(429, b'{"error": "slow down"}', {"Retry-After": "1"})
                elif mode == "malformed":
                    self._send(200, b'{"choices": [{"mess')
                elif mode == "stall":
                    time.sleep(5)  # past the client's timeout (the tests': 2.5 s)
                    self._send(503, b"")
                elif mode == "drop":
                    self.close_connection = True
                    self.connection.shutdown(2)
                if mode:
                    return mode
                conn = http.client.HTTPConnection(target.hostname, target.port, timeout=120)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                conn.request(self.command, self.path, body or None, headers)
                r = conn.getresponse()
                data = r.read()
                conn.close()
                ctype = r.getheader("Content-Type", "application/json")
                self._send(r.status, data, {"Content-Type": ctype})
                return str(r.status)

            def _send(self, status: int, data: bytes, headers: dict | None = None) -> None:
                try:
                    self.send_response(status)
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client gave up (a stall past its timeout)
                    pass

            do_GET = do_POST = _forward  # noqa: N815

        self.httpd = LoopbackHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}{target.path}"

    def _take(self, image: str | None) -> str | None:
        if image not in self.faults:
            return None
        mode, times = self.faults[image]
        if times == 0:
            return None
        self.faults[image] = (mode, times - 1)
        return mode

    def reset(self) -> None:
        with self.lock:
            self.faults.clear()
            self.seen.clear()
            self.most_in_flight = 0

    def settle(self, timeout: float = 15) -> None:
        """Wait for the requests still being answered (a stall outlives its client)."""
        deadline = time.monotonic() + timeout
        while self.in_flight and time.monotonic() < deadline:
            time.sleep(0.05)

    def posts(self) -> list[Seen]:
        self.settle()
        with self.lock:
            return [s for s in self.seen if s.path.endswith("/chat/completions")]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def served_model(base: str) -> str:
    """The id of the one model the server at `base` lists."""
    import requests

    return str(requests.get(f"{base}/models", timeout=10).json()["data"][0]["id"])


def dump(obj: object) -> str:
    return json.dumps(obj, sort_keys=True)
