"""A WebDataset shard written as a plain tar stream that is hashed while it is written.

The bytes are those of webdataset's TarWriter (USTAR headers, members in key order, mode
0444, owner "bigdata", a fixed mtime, the end-of-archive blocks padded to a 10 KiB record),
without its costs: each member goes to the file in one write straight from the bytes that
hold it (no copy through tarfile's stream), the SHA-256 runs in a second thread on the
same bytes while the next members are read and written (hashlib releases the GIL), and
every member's data offset is known as it is written instead of read back from the file.
Large local members are mapped (`mapped`), so that their bytes go from the page cache to the
hash and to the shard without being copied into, or zeroed in, memory of this process.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import tarfile
from collections import deque
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import BinaryIO

Buffer = bytes | memoryview
"""a member's bytes: read into memory, or a local file mapped"""

BLOCK = tarfile.BLOCKSIZE
RECORD = tarfile.RECORDSIZE
MTIME = 0
"""every member's mtime: the same samples give the same bytes"""
_PENDING = 64 << 20
"""bytes handed to the hash thread and not yet hashed, at most (bounds the memory held)"""


def mapped(path: str, smallest: int = 1 << 20) -> Buffer:
    """The bytes of a local file: mapped read-only when it holds at least `smallest` bytes
    (the map closes when the last view of it goes), else read."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size < smallest:
            return f.read()
        return memoryview(mmap.mmap(f.fileno(), size, access=mmap.ACCESS_READ))


def member_header(name: str, size: int) -> bytes:
    """The 512-byte tar header webdataset's TarWriter writes for a member."""
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, MTIME, 0o444
    info.uname = info.gname = "bigdata"
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


class ShardTar:
    """Write samples ({member: bytes}) to `f` as one tar; `close()` ends the archive and
    gives its SHA-256; `size` and `members` ({key: {member: [data offset, size, sha256]}})
    say where everything lies and what it is (a range read of one member checks it).
    `f` must write whole buffers (a buffered file, not a raw one,
    whose write may take only part)."""

    def __init__(self, f: BinaryIO) -> None:
        self.f, self.size = f, 0
        self.members: dict[str, dict[str, list[int | str]]] = {}
        self._sha = hashlib.sha256()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="sha256")
        self._pending: deque[tuple[Future[None], int]] = deque()
        self._held = 0

    def _out(self, data: Buffer) -> None:
        while self._pending and self._held + len(data) > _PENDING:
            fut, n = self._pending.popleft()
            fut.result()
            self._held -= n
        self._pending.append((self._pool.submit(self._sha.update, data), len(data)))
        self._held += len(data)
        self.f.write(data)
        self.size += len(data)

    def write(self, key: str, sample: Mapping[str, Buffer]) -> None:
        """Append one sample: its members in name order, named `key.member` (the hash thread
        reads each member's bytes after this returns: they must not change)."""
        where = self.members.setdefault(key, {})
        for name in sorted(sample):
            data = sample[name]
            self._out(member_header(f"{key}.{name}", len(data)))
            where[name] = [self.size, len(data), hashlib.sha256(data).hexdigest()]
            self._out(data)
            if len(data) % BLOCK:
                self._out(bytes(BLOCK - len(data) % BLOCK))

    def close(self) -> str:
        """End the archive (two zero blocks, padded to a whole record); its sha256 hex."""
        end = self.size + 2 * BLOCK
        try:
            self._out(bytes(2 * BLOCK + (-end) % RECORD))
        finally:
            self.abort()
        return self._sha.hexdigest()

    def abort(self) -> None:
        """Wait for the hash thread and stop it."""
        while self._pending:
            self._pending.popleft()[0].result()
        self._held = 0
        self._pool.shutdown()
