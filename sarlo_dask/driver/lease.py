"""One command at a time writes a store: a lease, `{store}/build.lock.json`, names its holder.

A `sarlo` command that writes {work} or {out} takes the store's lease before it starts a
cluster, renews it from a thread while it runs, and removes it when it ends (on an exception
or Ctrl-C too). Another command finds the lease and stops, naming the holder. A lease whose
holder is dead is taken over: on the same host when its process is gone, from another host
when it was not renewed for TTL_S seconds. The lease is created atomically: a hard link of a
whole file (local stores), a PUT with `If-None-Match: *` and renewed with `If-Match` (S3);
other fsspec stores get a check then a write (best effort): see lease_backends.

The decision (is a holder dead?) is `stale_reason`, pure; `Lease` does the I/O.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any

from sarlo_dask.driver.lease_backends import lease_backend
from sarlo_dask.errors import redact, redact_text
from sarlo_dask.store import Store, canonical

LEASE_NAME = "build.lock.json"
TTL_S = 300.0
"""a lease from another host not renewed for this long is taken to be dead"""
RENEW_S = 60.0
"""how often the holder renews it"""


@dataclass(frozen=True)
class Holder:
    """Who holds a lease, as its file records it."""

    host: str
    pid: int
    started: str
    """when the command started, UTC, ISO 8601"""
    command: str
    """its command line, credentials masked"""
    renewed: float
    """when it last renewed the lease, seconds since the epoch (its host's clock)"""
    token: str
    """this holding's id: a renewal or release touches only its own lease"""
    boot: str = ""
    """the host's boot id: a pid means nothing after a reboot"""
    pid_start: str = ""
    """the process's start time as the kernel counts it: a reused pid is another process"""

    def line(self) -> str:
        return f"host {self.host}, pid {self.pid}, started {self.started}, command: {self.command}"

    def encode(self) -> bytes:
        return json.dumps(asdict(self), indent=1, sort_keys=True).encode()

    @classmethod
    def decode(cls, data: bytes) -> Holder | None:
        """The holder a lease file names; None for a file that names none (damaged)."""
        try:
            fields = json.loads(data)
            return cls(**{k: fields[k] for k in cls.__dataclass_fields__ if k in fields})
        except (ValueError, TypeError, KeyError):
            return None


def stale_reason(
    holder: Holder | None,
    now: float,
    host: str,
    boot: str,
    process_start: Callable[[int], str | None],
    ttl: float = TTL_S,
) -> str:
    """Why `holder`'s lease may be taken over ("": it may still be working), seen from a
    process on `host` (booted as `boot`) at `now`. `process_start(pid)` is the start time of
    this host's process `pid`, None when there is none."""
    if holder is None:
        return "its lease file names no holder"
    if holder.host == host and holder.boot == boot:
        started = process_start(holder.pid)
        if started is None:
            return f"its process {holder.pid} is gone"
        if holder.pid_start and started != holder.pid_start:
            return f"its process {holder.pid} is gone (the pid is another process's now)"
        return ""
    if holder.host == host and holder.boot and boot:
        return "its host restarted since"
    age = now - holder.renewed
    if age > ttl:
        return f"not renewed for {age:.0f} s (taken over after {ttl:.0f} s)"
    return ""


def boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def process_start(pid: int) -> str | None:
    """The start time of process `pid` on this host (Linux: clock ticks after boot; elsewhere
    ""), None when no such process runs (a zombie, killed and not yet reaped, runs no more)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return None if fields[0] in ("Z", "X") else fields[19]
    except FileNotFoundError:
        return None
    except (OSError, IndexError):
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return ""


class LeaseHeld(Exception):
    """The store is leased by another command (`holder`), alive as far as can be told."""

    def __init__(self, store: str, url: str, holder: Holder) -> None:
        self.store, self.url, self.holder = store, url, holder
        super().__init__(
            f"{redact(store)} is in use by another sarlo command ({holder.line()}); it is "
            f"released when that command ends (lease {redact(url)})"
        )


def command_line(argv: Sequence[str]) -> str:
    """A command line as a lease records it: `sarlo ARGS`, credentials masked."""
    import shlex

    return redact_text(" ".join(["sarlo", *(shlex.quote(a) for a in argv)]))


class Lease:
    """The lease of one store, for one command."""

    def __init__(self, store: Store, command: str, ttl: float = TTL_S) -> None:
        self.store, self.ttl = store, ttl
        self.url = store.path(LEASE_NAME)
        self.backend = lease_backend(store, self.url)
        self.holder = Holder(
            host=socket.gethostname(),
            pid=os.getpid(),
            started=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            command=command,
            renewed=time.time(),
            token=uuid.uuid4().hex,
            boot=boot_id(),
            pid_start=process_start(os.getpid()) or "",
        )
        self.version = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> str:
        """Take the lease; what was taken over ("": it was free). Raises LeaseHeld."""
        data = self.holder.encode()
        for _ in range(5):  # a lease that changes under us is looked at again
            if version := self.backend.create(data):
                self.version = version
                return ""
            current = self.backend.read()
            if current is None:
                continue  # released meanwhile
            old = Holder.decode(current[0])
            h = self.holder
            why = stale_reason(old, time.time(), h.host, h.boot, process_start, self.ttl)
            if old is not None and not why:
                raise LeaseHeld(self.store.url, self.url, old)
            if version := self.backend.replace(data, current[1]):
                self.version = version
                who = old.line() if old else "none"
                return f"took over the lease of {redact(self.store.url)} ({who}): {why}"
        raise OSError(f"{redact(self.url)}: the lease keeps changing; try again")

    def renew(self) -> bool:
        """Renew the lease (every RENEW_S s); False when it is no longer ours."""
        self.holder = replace(self.holder, renewed=time.time())
        version = self.backend.renew(self.holder.encode(), self.version)
        if version is None:
            return False
        self.version = version
        return True

    def start_renewing(self, every: float = RENEW_S, on_lost: Callable[[str], Any] = print) -> None:
        def loop() -> None:
            while not self._stop.wait(every):
                try:
                    if not self.renew():
                        on_lost(f"warning: the lease {redact(self.url)} was taken over")
                        return
                except Exception as exc:  # the store unreachable for a while: try again
                    on_lost(f"warning: cannot renew {redact(self.url)}: {redact_text(str(exc))}")

        self._thread = threading.Thread(target=loop, name="sarlo-lease", daemon=True)
        self._thread.start()

    def release(self) -> None:
        """Stop renewing and remove the lease, if it is still ours."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self.version:
            self.backend.remove(self.version)
            self.version = ""


@contextmanager
def held(
    stores: Sequence[Store], command: str, say: Callable[[str], Any] = print
) -> Iterator[list[Lease]]:
    """Hold the lease of each store (a store named twice once) while the block runs; raises
    LeaseHeld, before any is kept, when another command holds one."""
    leases: list[Lease] = []
    seen: set[str] = set()
    try:
        for store in stores:
            if canonical(store.url) in seen:
                continue
            seen.add(canonical(store.url))
            lease = Lease(store, command)
            note = lease.acquire()
            leases.append(lease)
            if note:
                say(note)
            lease.start_renewing(on_lost=say)
        yield leases
    finally:
        for lease in reversed(leases):
            try:
                lease.release()
            except Exception as exc:  # the store gone: the next command takes the lease over
                say(f"warning: cannot remove {redact(lease.url)}: {redact_text(str(exc))}")
