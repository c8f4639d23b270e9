"""`fullfs://`: the local file system with a size limit, for the full-disk tests where no
small tmpfs can be mounted (not root). Registered with fsspec in every test process
(sitecustomize), so a build's workers and subprocesses write through it too.

A folder holding a `.fullfs-quota` file (a number of bytes) is a "disk" of that size: a write
below it that would bring the bytes of the files under it past the number fails as a full
disk does, with OSError ENOSPC. Removing the file makes room. Unlike `file://`, fsspec sees
another protocol, so the build writes through `fs.open` as on an object store.
"""

from __future__ import annotations

import errno
import os
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
    """A file open for writing that fails with ENOSPC where the disk would overflow."""

    def __init__(self, f: Any, path: str) -> None:
        self._f, self._path = f, path

    def write(self, data: Any) -> int:
        disk = limit(self._path)
        if disk is not None and used(disk[0]) + len(data) > disk[1]:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self._path)
        return int(self._f.write(data))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)

    def __enter__(self) -> _Limited:
        return self

    def __exit__(self, *exc: object) -> None:
        self._f.close()


class FullFileSystem(LocalFileSystem):
    protocol = ("fullfs",)

    def __init__(self, auto_mkdir: bool = True, **kwargs: Any) -> None:
        super().__init__(auto_mkdir=auto_mkdir, **kwargs)  # no folders to make, as on S3

    def unstrip_protocol(self, name: str) -> str:
        return f"fullfs://{self._strip_protocol(name)}"

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        f = super()._open(path, mode, **kwargs)
        return f if set(mode) <= {"r", "b", "t"} else _Limited(f, self._strip_protocol(path))

    def cp_file(self, path1: str, path2: str, **kwargs: Any) -> None:
        with self.open(path1, "rb") as src, self.open(path2, "wb") as dst:
            dst.write(src.read())


def register() -> None:
    import fsspec

    fsspec.register_implementation("fullfs", FullFileSystem, clobber=True)
