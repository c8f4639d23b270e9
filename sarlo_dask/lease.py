"""One command at a time writes a store: a lease, `{store}/build.lock.json`, names its holder.

A `sarlo` command that writes {work} or {out} takes the store's lease before it starts a
cluster, renews it from a thread while it runs, and removes it when it ends (on an exception
or Ctrl-C too). Another command finds the lease and stops, naming the holder. A lease whose
holder is dead is taken over: on the same host when its process is gone, from another host
when it was not renewed for TTL_S seconds. The lease is created atomically: a hard link of a
whole file (local stores), a PUT with `If-None-Match: *` and renewed with `If-Match` (S3);
other fsspec stores get a check then a write (best effort).

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

from sarlo_dask.errors import redact, redact_text
from sarlo_dask.store import PARTIAL, Store, is_local

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
    ""), None when no such process exists."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
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


class _Backend:
    """A lease file's I/O. Each write gives the version it wrote (None: not written); a
    version is what `read` gives back while nobody else writes."""

    def create(self, data: bytes) -> str | None:
        """Write `data` if there is no lease."""
        raise NotImplementedError

    def read(self) -> tuple[bytes, str] | None:
        """(content, version), None when there is no lease."""
        raise NotImplementedError

    def replace(self, data: bytes, version: str) -> str | None:
        """Write `data` over the lease if it is still at `version` (a take-over)."""
        raise NotImplementedError

    def renew(self, data: bytes, version: str) -> str | None:
        """Write `data` over our own lease, at `version`."""
        return self.replace(data, version)

    def remove(self, version: str) -> None:
        """Remove the lease if it is still at `version`."""
        current = self.read()
        if current is not None and current[1] == version:
            self._remove()

    def _remove(self) -> None:
        raise NotImplementedError


def _token_of(data: bytes) -> str:
    holder = Holder.decode(data)
    return holder.token if holder else data.hex()[:64]


class _LocalBackend(_Backend):
    """A file, created whole by a hard link (which fails when the name exists); its version
    is its holder's token."""

    def __init__(self, path: str) -> None:
        self.path = path

    def _staged(self, data: bytes) -> str:
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        tmp = f"{self.path}{PARTIAL}{uuid.uuid4().hex}"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        return tmp

    def create(self, data: bytes) -> str | None:
        tmp = self._staged(data)
        try:
            os.link(tmp, self.path)
            return _token_of(data)
        except FileExistsError:
            return None
        finally:
            os.remove(tmp)

    def read(self) -> tuple[bytes, str] | None:
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return None
        return data, _token_of(data)

    def replace(self, data: bytes, version: str) -> str | None:
        """Move the lease aside, check it is the one judged (`version`), then create anew;
        a lease another command made meanwhile is put back."""
        aside = f"{self.path}{PARTIAL}{uuid.uuid4().hex}"
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return self.create(data)
        with open(aside, "rb") as f:
            moved = f.read()
        if _token_of(moved) != version:  # not the lease judged: give it back
            try:
                os.link(aside, self.path)
            except FileExistsError:
                pass
        os.remove(aside)
        return self.create(data) if _token_of(moved) == version else None

    def renew(self, data: bytes, version: str) -> str | None:
        current = self.read()
        if current is None or current[1] != version:
            return None
        os.replace(self._staged(data), self.path)
        return _token_of(data)

    def _remove(self) -> None:
        os.remove(self.path)


class _S3Backend(_Backend):
    """An S3 object, created with If-None-Match: * and replaced with If-Match: its ETag (S3
    conditional writes; moto 5.2 honours both)."""

    def __init__(self, fs: Any, path: str) -> None:
        self.fs = fs
        self.bucket, self.key = path.split("/", 1)

    def _put(self, data: bytes, **condition: str) -> str | None:
        try:
            out = self.fs.call_s3(
                "put_object", Bucket=self.bucket, Key=self.key, Body=data, **condition
            )
        except Exception as exc:
            text = f"{type(exc).__name__} {exc} {getattr(exc, '__cause__', '')}"
            if any(s in text for s in ("PreconditionFailed", "412", "NoSuchKey", "409")):
                return None  # the condition did not hold: another command wrote
            raise
        return str(out["ETag"])

    def create(self, data: bytes) -> str | None:
        return self._put(data, IfNoneMatch="*")

    def read(self) -> tuple[bytes, str] | None:
        from fsspec.asyn import sync

        async def get() -> tuple[bytes, str]:
            out = await self.fs._call_s3("get_object", Bucket=self.bucket, Key=self.key)
            try:
                data = await out["Body"].read()
            finally:
                out["Body"].close()
            return bytes(data), str(out["ETag"])

        try:
            return sync(self.fs.loop, get)
        except FileNotFoundError:
            return None

    def replace(self, data: bytes, version: str) -> str | None:
        return self._put(data, IfMatch=version)

    def _remove(self) -> None:
        self.fs.call_s3("delete_object", Bucket=self.bucket, Key=self.key)


class _FsspecBackend(_Backend):
    """Any other fsspec store: a check, then a write (it has no atomic create)."""

    def __init__(self, fs: Any, path: str) -> None:
        self.fs, self.path = fs, path

    def create(self, data: bytes) -> str | None:
        if self.fs.exists(self.path):
            return None
        self.fs.pipe_file(self.path, data)
        return _token_of(data)

    def read(self) -> tuple[bytes, str] | None:
        try:
            data = self.fs.cat_file(self.path)
        except FileNotFoundError:
            return None
        return data, _token_of(data)

    def replace(self, data: bytes, version: str) -> str | None:
        current = self.read()
        if current is not None and current[1] != version:
            return None
        self.fs.pipe_file(self.path, data)
        return _token_of(data)

    def _remove(self) -> None:
        self.fs.rm(self.path)


def _backend(store: Store, url: str) -> _Backend:
    fs, path = store.filesystem(url)
    fs.invalidate_cache()
    if is_local(fs):
        return _LocalBackend(path)
    protocol = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    if {"s3", "s3a"} & set(protocol):
        return _S3Backend(fs, path)
    return _FsspecBackend(fs, path)


def command_line(argv: Sequence[str]) -> str:
    """A command line as a lease records it: `sarlo ARGS`, credentials masked."""
    import shlex

    return redact_text(" ".join(["sarlo", *(shlex.quote(a) for a in argv)]))


class Lease:
    """The lease of one store, for one command."""

    def __init__(self, store: Store, command: str, ttl: float = TTL_S) -> None:
        self.store, self.ttl = store, ttl
        self.url = store.path(LEASE_NAME)
        self.backend = _backend(store, self.url)
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
            if store.url in seen:
                continue
            seen.add(store.url)
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
