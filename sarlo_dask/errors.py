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
        self.reason = redact_text(reason)
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
    return redact_text(text)[:limit]


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


def root_cause(exc: BaseException) -> str:
    """The innermost exception behind `exc` (a refused connection, a name not found)."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return exception_chain(exc, limit=200)


DENIED_CODES = ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken")
"""S3 error codes of a refused authentication"""


def access_denied(exc: BaseException) -> str:
    """The one-line reason of an authentication failure in `exc` or its causes ("": none):
    an HTTP 401 or 403 answer, S3's refusal of the keys, or a PermissionError of a store."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        status = getattr(cur, "status", None)
        code = str(getattr(cur, "response", {}).get("Error", {}).get("Code", ""))
        if status in (401, 403):
            what = "Unauthorized" if status == 401 else "Forbidden"
            return f"access denied (HTTP {status} {what}): check the credentials"
        if code in DENIED_CODES or isinstance(cur, PermissionError):
            return f"access denied ({code or one_line(cur)}): check the credentials"
        cur = cur.__cause__ or cur.__context__
    return ""


def caused_by_other(exc: BaseException) -> bool:
    """Whether `exc` was raised while handling another exception (it has a cause)."""
    return exc.__cause__ is not None or (
        exc.__context__ is not None and not exc.__suppress_context__
    )


MASK = "***"
"""what a credential is shown as"""

_PORT = re.compile(r"[^:/@]*:\d+")
_NAMES = (
    r"(?:aws_)?(?:secret_access_key|access_key_id|session_token|secret_key|access_key)"
    r"|secret|password|passwd|pwd|token|key|api[_-]?key|credentials?|signature|sig"
    r"|connection_string|x-amz-(?:security-token|signature|credential)"
)
_START = r"(?<![A-Za-z0-9])"
"""a name starts a field also after _ (account_key, sas_token), where \\b sees none"""
_QUOTED_FIELD = re.compile(rf"(?i){_START}({_NAMES})(['\"]?\s*[:=]\s*)(['\"])([^'\"]*)\3")
_BARE_FIELD = re.compile(rf"(?i){_START}({_NAMES})=([^\s&'\",;)}}\]]+)")
_HEADER = re.compile(
    r"(?i)\b(authorization|proxy-authorization|x-api-key|cookie)(['\"]?\s*[:=]\s*['\"]?)"
    r"([^'\"\r\n]+)"
)


def _userinfo(rest: str) -> int:
    """The length of the user info (user[:password]) at the start of `rest`, the part of a URL
    after "scheme://" (0: none). A password may hold "/" (S3 secret keys do): the user info is
    what comes before the last "@" of the authority and path, unless that looks like a host
    (no ":" before the first "/", or host:port)."""
    head = re.split(r"[?#]", rest, maxsplit=1)[0]
    at = head.rfind("@")
    if at < 0:
        return 0
    candidate = head[:at]
    first = candidate.split("/", 1)[0]
    if "/" in candidate and (":" not in first or _PORT.fullmatch(first)):
        return 0  # an "@" in the path, not user info
    return at + 1


def redact(url: str) -> str:
    """A URL without credentials, for anything written or printed: user info and query
    values shown as ***, the fragment dropped. Unit keys and digests are made of redacted
    URLs, so a rotated token or password changes none."""
    scheme, sep, rest = url.partition("://")
    if sep and (n := _userinfo(rest)):
        url = f"{scheme}://{MASK}@{rest[n:]}"
    parts = urlsplit(url)
    query = "&".join(
        (f"{k}={MASK}" if sep_ else MASK) if (k or sep_) else ""
        for k, sep_, _ in (item.partition("=") for item in parts.query.split("&"))
    )
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query if parts.query else "", ""))


def redact_text(text: str) -> str:
    """`text` with every secret in it shown as ***: the credentials of each URL (exception
    messages quote request URLs), fields named like a credential (`key=...`, `'secret':
    '...'`, storage options printed as a dict) and authorization headers. The one function
    every message, log line and record goes through."""
    text = _URL.sub(lambda m: redact(m.group(0)), text)
    text = _HEADER.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
    text = _QUOTED_FIELD.sub(
        lambda m: f"{m.group(1)}{m.group(2)}{m.group(3)}{MASK}{m.group(3)}", text
    )
    return _BARE_FIELD.sub(lambda m: f"{m.group(1)}={MASK}", text)


redact_urls = redact_text
"""the earlier name of redact_text"""


class DemError(ValueError):
    """A DEM that cannot give heights for a scene: one line, what and why."""
