"""Errors that carry what failed, where, and why, as one line."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

T = TypeVar("T")

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


class SceneError(Exception):
    """A scene that cannot be standardized: `where` names the input, `reason` says why."""

    def __init__(self, where: str, reason: str, stage: str = "ingest") -> None:
        self.where = redact(where)
        self.reason = redact_urls(reason)
        self.stage = stage
        super().__init__(f"{self.where}: {self.reason}")

    def __reduce__(self) -> tuple[type[SceneError], tuple[str, str, str]]:
        # keep the fields when the error crosses a process boundary (Dask workers)
        return (SceneError, (self.where, self.reason, self.stage))


def refusals_travel(task: Callable[..., T]) -> Callable[..., T]:
    """A task whose SceneError reaches the client as a SceneError: raised afresh, without the
    exception chain it was raised from (Dask pickles the chain with tblib, and a library's
    exception in it, such as aiohttp's with its headers, may not pickle: the client would get
    a plain Exception, taken for a transient failure)."""

    @functools.wraps(task)
    def run(*args: Any, **kwargs: Any) -> T:
        try:
            return task(*args, **kwargs)
        except SceneError as exc:
            refusal = SceneError(exc.where, exc.reason, exc.stage)
        raise refusal  # outside the handler: no __context__

    return run


def one_line(exc: BaseException, limit: int = 300) -> str:
    """An exception's message on one line, at most `limit` characters (its type if empty)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return redact_urls(text)[:limit]


def exception_line(exc: BaseException) -> str:
    """'Type: message' on one line: how a failure's reason names an unexpected exception."""
    return f"{type(exc).__name__}: {one_line(exc)}"


def exception_chain(exc: BaseException, limit: int = 400) -> str:
    """'Type: message' of `exc` and of each exception that caused it, on one line: a library
    that re-raises a connection failure as FileNotFoundError(url) still tells why."""
    parts: list[str] = []
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        parts.append(exception_line(cur))
        cur = cur.__cause__ or (None if cur.__suppress_context__ else cur.__context__)
    return " <- ".join(parts)[:limit]


def caused_by_other(exc: BaseException) -> bool:
    """Whether `exc` was raised while handling another exception (it has a cause)."""
    return exc.__cause__ is not None or (
        exc.__context__ is not None and not exc.__suppress_context__
    )


def redact(url: str) -> str:
    """A URL without credentials: user info dropped, query values masked."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    query = re.sub(r"=([^&]*)", "=***", parts.query) if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def redact_urls(text: str) -> str:
    """`text` with every URL in it redacted (exception messages quote request URLs)."""
    return _URL.sub(lambda m: redact(m.group(0)), text)


class DemError(ValueError):
    """A DEM that cannot give heights for a scene: one line, what and why."""
