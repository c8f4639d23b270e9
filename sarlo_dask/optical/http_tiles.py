"""XYZ tiles over HTTP: an optical source with a cache, retries and bounded concurrency.

Per tile: the image bytes, None for a tile the server does not have (404: an empty tile), or
a TileFailure that says why after bounded retries (429 and 503 wait what their Retry-After
says; a per-host request rate can be set). Downloads go to a cache written whole or not at
all (a partial download is never taken for a tile): a local folder, shared by the workers of
one host, or any fsspec URL (s3://...) shared by every worker of a cluster, so neighbouring
SAR tiles, other workers and later runs reuse them.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sarlo_dask.driver.integrity import CHECKS, Damage, sha256
from sarlo_dask.driver.retry import host_rate, retry_after
from sarlo_dask.errors import redact, root_cause
from sarlo_dask.optical.source import Tile, TileFailure, TileResult, XYZSource
from sarlo_dask.store import filesystem, join, write_bytes

DIGEST = ".sha256"
"""beside a cached tile: the sha256 of its bytes"""
USER_AGENT = "sarlo-dask/0.1 (+https://github.com/sarlo-dask; dataset builder)"


def _looks_like_image(data: bytes) -> bool:
    from io import BytesIO

    from PIL import Image

    try:
        with Image.open(BytesIO(data)) as im:
            im.verify()
        return True
    except Exception:
        return False


_sessions = threading.local()


def _session() -> Any:
    import requests

    s = getattr(_sessions, "session", None)
    if s is None:
        s = requests.Session()
        s.headers["User-Agent"] = USER_AGENT
        _sessions.session = s
    return s


@dataclass(frozen=True)
class HTTPTiles(XYZSource):
    """An XYZ URL template `{z}/{x}/{y}` over HTTP with cache, retries and bounded concurrency."""

    kind = "xyz"
    prefetchable = True

    template: str
    zoom: int = 19
    cache_dir: str = ""
    timeout: float = 10.0
    retries: int = 3
    backoff: float = 0.5
    max_workers: int = 4
    rate: float = 0.0
    """requests per second to the template's host from this process (0: no limit)"""
    cache_options: dict[str, Any] | None = None
    """storage options of `cache_dir` when it is a URL (s3://...: one cache every worker
    of a cluster shares, so a tile one worker fetched is not fetched again by another)"""
    fail_fast: bool = False
    """stop at the first tile that still fails after its retries: the tiles not yet asked for
    come back with that failure (a reconstruction learns in seconds that a server is down)"""

    @classmethod
    def parse(cls, spec: str, zoom: int, **options: Any) -> HTTPTiles | None:
        """An http(s) template with {z}, {x} and {y} (refused when meta.json masked its
        query values: the key must be given again)."""
        if not spec.startswith(("http://", "https://")):
            return None
        if not all(k in spec for k in ("{z}", "{x}", "{y}")):
            raise ValueError(f"optical template {redact(spec)} needs {{z}}, {{x}} and {{y}}")
        if "=***" in urlsplit(spec).query:
            raise ValueError(
                f"optical template {redact(spec)}: its query values were redacted "
                "(meta.json keeps no credentials): give the template with them"
            )
        return cls(spec, zoom=zoom, **options)

    def describe(self) -> str:
        return redact(self.template)

    def check(self) -> str:
        """The server answers a request (any HTTP status: only an unreachable host fails)."""
        import requests

        probe = self.template.format(z=0, x=0, y=0)
        try:
            requests.get(probe, timeout=min(self.timeout, 10.0), stream=True).close()
        except requests.RequestException as exc:
            return f"unreachable ({root_cause(exc)})"
        return ""

    def _cache_root(self) -> str:
        """The cache: a local folder (default ~/.cache/sarlo/tiles) or any fsspec URL."""
        return self.cache_dir or os.path.join(os.path.expanduser("~"), ".cache", "sarlo", "tiles")

    def _cache_column(self, z: int, x: int) -> str:
        """Where column x of zoom z is cached."""
        tag = hashlib.sha256(self.template.encode()).hexdigest()[:12]
        return join(self._cache_root(), tag, str(z), str(x))

    def _cache_url(self, z: int, x: int, y: int) -> str:
        """Where tile z/x/y is cached; `.empty` beside it records a 404, `.sha256` (written
        after it: its marker) its digest, checked at every read."""
        return join(self._cache_column(z, x), str(y))

    def cached(self, tiles: Iterable[Tile], damaged: list[Damage] | None = None) -> set[Tile]:
        """Those of `tiles` the cache holds, as an image or a 404's record: one listing per
        column of tiles, not a request per tile (what a fetch plan leaves out). Given a
        `damaged` list, each held image is also read and checked against its digest: one
        that does not verify is not held, and its Damage is appended (the build says it)."""
        columns: dict[tuple[int, int], set[int]] = {}
        for z, x, y in tiles:
            columns.setdefault((z, x), set()).add(y)
        held: set[tuple[int, int, int]] = set()
        for (z, x), ys in sorted(columns.items()):
            fs, path = filesystem(self._cache_column(z, x), self.cache_options)
            fs.invalidate_cache(path)  # another worker may have written since a listing
            try:
                names = {p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(path, detail=False)}
            except FileNotFoundError:
                continue
            done = {(z, x, y) for y in ys if str(y) in names and f"{y}{DIGEST}" in names}
            if damaged is not None and CHECKS[0]:
                urls = {t: self._cache_url(*t) for t in sorted(done)}
                bad = [(t, self._damage(u, self._read(u))) for t, u in urls.items()]
                damaged += [d for _, d in bad if d is not None]
                done -= {t for t, d in bad if d is not None}
            held |= done | {(z, x, y) for y in ys if f"{y}.empty" in names}
        return held

    def _read(self, url: str) -> tuple[bytes, str] | None:
        """Cached image `url`'s bytes and the sha256 recorded beside it; None when either is
        missing (never written, or written and its digest not yet)."""
        fs, path = filesystem(url, self.cache_options)
        try:
            return bytes(fs.cat_file(path)), fs.cat_file(f"{path}{DIGEST}").decode()
        except FileNotFoundError:
            return None

    def _damage(self, url: str, got: tuple[bytes, str] | None) -> Damage | None:
        """The Damage of cached image `url` when its bytes are not those recorded at commit."""
        if got is None or not CHECKS[0] or sha256(got[0]) == got[1]:
            return None
        root = self._cache_root().rstrip("/")  # {work}/xyz-cache: named from {work}
        rel = join(root.rsplit("/", 1)[-1], url[len(root) :].lstrip("/"))
        why = "sha256 differs from the one recorded at commit"
        return Damage(rel, why, "xyz", "", "/".join(url.rsplit("/", 3)[1:]))

    def _cached(self, url: str) -> tuple[bool, bytes | None]:
        """(whether tile `url` is cached, its bytes: None for an empty tile). A cached image
        whose digest does not verify is not taken: it is said (one line) and fetched again."""
        got = self._read(url)
        if got is None:
            fs, path = filesystem(url, self.cache_options)
            return fs.exists(f"{path}.empty"), None
        if (damage := self._damage(url, got)) is not None:
            logging.getLogger("sarlo_dask").warning(damage.line())
            return False, None
        return True, got[0]

    def _get(self, z: int, x: int, y: int) -> TileResult:
        cached = self._cache_url(z, x, y)
        hit, data = self._cached(cached)
        if hit:
            return data
        url = self.template.format(z=z, x=x, y=y)
        host = urlsplit(url).netloc
        reason, hint = "no attempt", None
        for attempt in range(self.retries + 1):
            if attempt:  # the server's Retry-After (429, 503), else backoff
                time.sleep(retry_after(hint, attempt - 1, self.backoff))
            hint = None
            host_rate(self.rate).wait(host)
            try:
                resp = _session().get(url, timeout=self.timeout)
            except Exception as exc:  # timeouts, refused or dropped connections
                reason = f"{type(exc).__name__}"
                continue
            if resp.status_code == 404:
                write_bytes(f"{cached}.empty", b"", self.cache_options)
                return None
            if resp.status_code != 200:
                reason = f"HTTP {resp.status_code}"
                if resp.status_code in (429, 503):
                    hint = resp.headers.get("Retry-After")
                continue
            if not _looks_like_image(resp.content):
                reason = "not an image (garbage bytes)"
                continue
            write_bytes(cached, resp.content, self.cache_options)  # whole, or not at all
            write_bytes(f"{cached}{DIGEST}", sha256(resp.content).encode(), self.cache_options)
            return resp.content
        return TileFailure(f"tile {z}/{x}/{y}: {reason} after {self.retries + 1} attempts")

    def fetch(self, tiles: list[Tile]) -> dict[Tile, TileResult]:
        stopped: list[TileFailure] = []  # fail_fast: the first failure, once there is one

        def get(t: tuple[int, int, int]) -> TileResult:
            if stopped:
                return stopped[0]
            got = self._get(*t)
            if self.fail_fast and isinstance(got, TileFailure):
                stopped.append(got)
            return got

        with ThreadPoolExecutor(max_workers=self.max_workers) as pool:
            results = list(pool.map(get, tiles))
        return dict(zip(tiles, results, strict=True))
