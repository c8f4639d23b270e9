"""The test suite's network guard: no connection and no name lookup leaves the loopback.

Installed in the pytest process by conftest.py and, through `sitecustomize.py` in this folder
(which conftest puts on PYTHONPATH), in every Python process the tests start: Dask schedulers
and workers, CLI subprocesses, notebook kernels. A connection (TCP connect, UDP connect or
sendto) to an address outside 127.0.0.0/8 and ::1, or a DNS lookup of a name other than
localhost, raises `NetworkGuardError` (an OSError, as a refused connection would be) and is
appended to a log in the folder named by $SARLO_NETGUARD, so that a library which swallows
the error still fails the test: conftest reads the log after every test.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import sys
import traceback
from pathlib import Path
from typing import Any

ENV = "SARLO_NETGUARD"
LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}
_INET = (socket.AF_INET, socket.AF_INET6)


class NetworkGuardError(ConnectionRefusedError):
    """A test process tried to reach an address outside the loopback."""


def is_loopback(host: object) -> bool:
    """Whether `host` (an address or a name) stays on this machine's loopback."""
    if host is None or host == "" or host == b"":
        return True  # getaddrinfo(None, ...): a local (passive or loopback) address
    name = host.decode() if isinstance(host, bytes) else str(host)
    name = name.split("%", 1)[0].strip("[]").lower()
    if name in LOCAL_NAMES:
        return True
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return bool(ip.is_loopback or (mapped is not None and mapped.is_loopback))


def _is_numeric(host: object) -> bool:
    name = host.decode() if isinstance(host, bytes) else str(host)
    try:
        ipaddress.ip_address(name.split("%", 1)[0].strip("[]"))
    except ValueError:
        return False
    return True


def _refuse(what: str, target: object) -> NetworkGuardError:
    message = (
        f"network guard: {what} {target!r} refused in pid {os.getpid()}: "
        "tests may only reach 127.0.0.0/8 and ::1"
    )
    folder = os.environ.get(ENV)
    if folder:
        record = {
            "pid": os.getpid(),
            "argv": sys.argv[:3],
            "what": what,
            "target": repr(target),
            "message": message,
            "stack": traceback.format_stack(limit=12)[:-2],
        }
        try:
            with open(Path(folder) / f"{os.getpid()}.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
        except OSError:
            pass
    return NetworkGuardError(message)


def _check_address(sock: socket.socket, address: Any, what: str) -> None:
    if sock.family in _INET and isinstance(address, tuple) and not is_loopback(address[0]):
        raise _refuse(what, address[:2])


def _wrap_method(name: str, what: str) -> None:
    original = getattr(socket.socket, name)

    def guarded(self: socket.socket, *args: Any) -> Any:
        if args:
            _check_address(self, args[-1] if name.startswith("send") else args[0], what)
        return original(self, *args)

    guarded.__wrapped__ = original  # type: ignore[attr-defined]
    setattr(socket.socket, name, guarded)


def _wrap_lookup(name: str) -> None:
    original = getattr(socket, name)

    def guarded(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not (is_loopback(host) or _is_numeric(host)):
            raise _refuse(f"name lookup ({name}) of", host)
        return original(host, *args, **kwargs)

    guarded.__wrapped__ = original  # type: ignore[attr-defined]
    setattr(socket, name, guarded)


def install() -> None:
    """Guard this process's sockets and name lookups (idempotent)."""
    if getattr(socket, "_sarlo_netguard", False):
        return
    _wrap_method("connect", "connection to")
    _wrap_method("connect_ex", "connection to")
    _wrap_method("sendto", "datagram to")
    for name in ("getaddrinfo", "gethostbyname", "gethostbyname_ex"):
        _wrap_lookup(name)
    socket._sarlo_netguard = True  # type: ignore[attr-defined]


def take(folder: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The refusals recorded in `folder` since the last call, removed from it."""
    found: list[dict[str, Any]] = []
    for path in sorted(Path(folder).glob("*.jsonl")):
        try:
            text = path.read_text(encoding="utf-8")
            path.unlink()
        except FileNotFoundError:
            continue
        found += [json.loads(line) for line in text.splitlines() if line.strip()]
    return found
