"""`fullfs://`: the local file system with a size limit, for the full-disk tests where no
small tmpfs can be mounted (not root). Registered with fsspec in every test process
(sitecustomize), so a build's workers and subprocesses write through it too.

A folder holding a `.fullfs-quota` file (a number of bytes) is a "disk" of that size: a write
below it that would bring the bytes of the files under it past the number fails as a full
disk does, with OSError ENOSPC, and leaves the file as it was (an object store's PUT is whole
or nothing). Removing the quota file makes room. Unlike `file://`, fsspec sees another
protocol, so the build writes through `fs.open` as on an object store.
"""

from __future__ import annotations

import errno
import os
import uuid
from typing import Any

from fsspec.implementations.local import LocalFileSystem

QUOTA = ".fullfs-quota"


def limit(path: str) -> tuple[str, int] | None:
    """(the disk's folder, its size in bytes) of the nearest folder above `path` with a quota."""
    folder = os.path.dirname(os.path.abspath(path))
    while True:
        try:
            with open(os.path.join(folder, QUOTA)) as f:
                return folder, int(f.read())
        except FileNotFoundError:
            pass
        if folder == os.path.dirname(folder):
            return None
        folder = os.path.dirname(folder)


def used(folder: str) -> int:
    """Bytes of the files under `folder` (what a tmpfs counts, less its block rounding)."""
    total = 0
    for top, _, names in os.walk(folder):
        for name in names:
            try:
                total += os.lstat(os.path.join(top, name)).st_size
            except FileNotFoundError:  # removed meanwhile (a rename, a cleanup)
                pass
    return total


class _Limited:
    """A file open for writing that fails with ENOSPC where the disk would overflow. It is
    written whole or not at all, as an object store's PUT: to a temporary name, renamed
    over `path` on a close after no error (a failed write leaves `path` as it was)."""

    def __init__(self, fs: LocalFileSystem, path: str, mode: str, **kwargs: Any) -> None:
        self._path, self._tmp, self._ok = path, f"{path}.fullfs-{uuid.uuid4().hex}", True
        self._f = LocalFileSystem._open(fs, self._tmp, mode, **kwargs)

    def write(self, data: Any) -> int:
        disk = limit(self._path)
        if disk is not None and used(disk[0]) + len(data) > disk[1]:
            self._ok = False
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self._path)
        return int(self._f.write(data))

    def close(self) -> None:
        if self._f.closed:
            return
        self._f.close()
        if self._ok:
            os.replace(self._tmp, self._path)
        else:
            os.remove(self._tmp)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)

    def __enter__(self) -> _Limited:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self._ok = self._ok and exc_type is None
        self.close()


class FullFileSystem(LocalFileSystem):
    protocol = ("fullfs",)

    def __init__(self, auto_mkdir: bool = True, **kwargs: Any) -> None:
        super().__init__(auto_mkdir=auto_mkdir, **kwargs)  # no folders to make, as on S3

    def unstrip_protocol(self, name: str) -> str:
        return f"fullfs://{self._strip_protocol(name)}"

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        if "w" not in mode:
            return super()._open(path, mode, **kwargs)
        path = self._strip_protocol(path)
        if self.auto_mkdir:
            self.makedirs(self._parent(path), exist_ok=True)
        return _Limited(self, path, mode, **kwargs)

    def cp_file(self, path1: str, path2: str, **kwargs: Any) -> None:
        with self.open(path1, "rb") as src, self.open(path2, "wb") as dst:
            dst.write(src.read())
