"""How a lease file (sarlo_dask.driver.lease) is created only when absent, read, replaced only when
unchanged, and removed, on each kind of store: a local file system (a hard link of a whole
file), S3 (conditional writes), any other fsspec store (a check, then a write)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from typing import Any

from sarlo_dask.store import PARTIAL, Store, is_local


class Backend:
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
    """A lease file's version where the store keeps none: a digest of its content."""
    return hashlib.sha256(data).hexdigest()[:32]


class _LocalBackend(Backend):
    """A file, created whole by a hard link (which fails when the name exists)."""

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
        except FileNotFoundError:  # the holder's remove_partials took the staged file
            return None
        finally:
            with contextlib.suppress(FileNotFoundError):
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


class _S3Backend(Backend):
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


class _FsspecBackend(Backend):
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


def lease_backend(store: Store, url: str) -> Backend:
    fs, path = store.filesystem(url)
    fs.invalidate_cache()
    if is_local(fs):
        return _LocalBackend(path)
    protocol = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    if {"s3", "s3a"} & set(protocol):
        return _S3Backend(fs, path)
    return _FsspecBackend(fs, path)
