"""A real XYZ tile server on 127.0.0.1 for the tests: a known ground texture with red markers.

Faults are injected per tile or for all tiles: HTTP 500, 429 with Retry-After: 1, a stall
past the client's timeout, a dropped connection, 404, or bytes that are not an image; `times`
limits how often (per tile for a tile's fault).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler

from sarlo_dask.sim.optical import render_ground_tile

from .helpers import LoopbackHTTPServer


class TileServer:
    def __init__(self, markers: list[tuple[float, float]]) -> None:
        self.markers = markers
        self.faults: dict[object, tuple[str, int]] = {}
        self.requests = 0
        self.paths: list[str] = []  # every request's path and query, in order
        self.times: list[tuple[float, str, str]] = []  # (time, path, what it answered)
        self.each: dict[tuple[int, int, int], int] = {}  # faults["each"]: served per tile
        self.served: Counter[str] = Counter()  # faults actually answered, by mode
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                with server.lock:
                    server.requests += 1
                    server.paths.append(self.path)
                parts = self.path.strip("/").split(".")[0].split("/")
                try:
                    z, x, y = (int(p) for p in parts[-3:])
                except ValueError:
                    self.send_error(400)
                    return
                mode = server._take_fault((z, x, y))
                with server.lock:
                    server.times.append((time.monotonic(), self.path, mode or "200"))
                if mode == "429":  # too many requests: come back in a second
                    self.send_response(429)
                    self.send_header("Retry-After", "1")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if mode == "500":
                    self.send_error(500)
                    return
                if mode == "404":
                    self.send_error(404)
                    return
                if mode == "timeout":
                    time.sleep(1.5)
                if mode == "drop":
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                body = (
                    b"\x89PNG garbage" * 50
                    if mode == "garbage"
                    else render_ground_tile(z, x, y, server.markers)
                )
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = LoopbackHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/{{z}}/{{x}}/{{y}}.png"

    def _take_fault(self, tile: tuple[int, int, int]) -> str | None:
        with self.lock:
            if "each" in self.faults:  # every tile, its first `times` requests
                mode, times = self.faults["each"]
                seen = self.each.setdefault(tile, 0)
                if seen < times:
                    self.each[tile] = seen + 1
                    self.served[mode] += 1
                    return mode
            for key in (tile, "all"):
                if key in self.faults:
                    mode, times = self.faults[key]
                    if times == 0:
                        continue
                    self.faults[key] = (mode, times - 1)
                    self.served[mode] += 1
                    return mode
        return None

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
