"""A static file server on 127.0.0.1 that answers HTTP range requests and counts what it sends:
the reference for "each byte of a remote scene is fetched once"."""

from __future__ import annotations

import os
import re
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from .helpers import LoopbackHTTPServer


class RangeServer:
    """`basic` ("user", "password") or `token` (a `token=` query value) makes every request
    without them answer 401; `credentials` records what each request brought."""

    def __init__(
        self, root: Path, basic: tuple[str, str] | None = None, token: str | None = None
    ) -> None:
        self.root = Path(root)
        self.lock = threading.Lock()
        self.log: list[tuple[str, str, int]] = []  # (method, path, body bytes sent)
        self.credentials: list[tuple[str, str]] = []  # (Authorization header, query)
        self.basic, self.token = basic, token
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _answer(self, body: bool) -> None:
                if not server._allowed(self.headers.get("Authorization", ""), self.path):
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="scenes"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    server._count(self.command, self.path, 0)
                    return
                path = server.root / self.path.split("?", 1)[0].lstrip("/")
                if not path.is_file():
                    self.send_error(404)
                    server._count(self.command, self.path, 0)
                    return
                size = path.stat().st_size
                start, end = 0, size - 1
                m = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", ""))
                if m and m.group(1):
                    start = int(m.group(1))
                    end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
                elif m and m.group(2):  # the last N bytes
                    start, end = max(0, size - int(m.group(2))), size - 1
                n = max(0, end - start + 1)
                self.send_response(206 if m else 200)
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", str(n if body or m else size))
                if m:
                    self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
                self.end_headers()
                sent = 0
                if body:
                    with open(path, "rb") as f:
                        f.seek(start, os.SEEK_SET)
                        data = f.read(n)
                    self.wfile.write(data)
                    sent = len(data)
                server._count(self.command, self.path, sent)

            def do_GET(self) -> None:  # noqa: N802
                self._answer(True)

            def do_HEAD(self) -> None:  # noqa: N802
                self._answer(False)

        self.httpd = LoopbackHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def _allowed(self, authorization: str, path: str) -> bool:
        import base64
        from urllib.parse import parse_qs, urlsplit

        query = urlsplit(path).query
        with self.lock:
            self.credentials.append((authorization, query))
        if self.basic is not None:
            expected = base64.b64encode(":".join(self.basic).encode()).decode()
            if authorization != f"Basic {expected}":
                return False
        return self.token is None or parse_qs(query).get("token") == [self.token]

    def _count(self, method: str, path: str, n: int) -> None:
        with self.lock:
            self.log.append((method, path, n))

    def traffic(self, path: str) -> tuple[int, int]:
        """(requests, body bytes) answered for one file's path."""
        with self.lock:
            hits = [n for _, p, n in self.log if p.split("?", 1)[0] == path]
        return len(hits), sum(hits)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
