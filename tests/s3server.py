"""moto's S3 API server on 127.0.0.1, keeping a log of the requests it answered."""

from __future__ import annotations

import threading
from typing import Any

from moto.server import ThreadedMotoServer
from werkzeug.serving import make_server


class RecordingMotoServer(ThreadedMotoServer):
    """ThreadedMotoServer whose app logs (method, path, status) of every request: a fault
    test shows what the server saw, not only what the client made of it."""

    def __init__(self, ip_address: str = "127.0.0.1", port: int = 0, verbose: bool = False):
        super().__init__(ip_address, port, verbose)
        self.requests: list[tuple[str, str, int]] = []
        self.sent: list[tuple[str, str, int]] = []  # (method, path, body bytes) of answers
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        host, port = self.get_host_and_port()
        return f"http://{host}:{port}"

    def _server_entry(self) -> None:
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )

        app = DomainDispatcherApplication(create_backend_app)

        def recording(environ: dict[str, Any], start_response: Any) -> Any:
            def start(status: str, headers: Any, *exc: Any) -> Any:
                length = next((int(v) for k, v in headers if k.lower() == "content-length"), 0)
                method, path = environ["REQUEST_METHOD"], environ["PATH_INFO"]
                with self._lock:
                    self.requests.append((method, path, int(status[:3])))
                    self.sent.append((method, path, length if method != "HEAD" else 0))
                return start_response(status, headers, *exc)

            return app(environ, start)

        self._server = make_server(
            self._ip_address, self._port, recording, True, request_handler=MotoRequestHandler
        )
        self._server_ready_event.set()
        self._server.serve_forever()

    def traffic(self, path: str) -> tuple[int, int]:
        """(requests, body bytes) the server answered for one object's path."""
        with self._lock:
            hits = [n for _, p, n in self.sent if p == path]
        return len(hits), sum(hits)

    def answers(self, path_suffix: str) -> list[tuple[str, str, int]]:
        """The logged requests whose path ends with `path_suffix`."""
        with self._lock:
            return [r for r in self.requests if r[1].endswith(path_suffix)]
