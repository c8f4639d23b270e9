"""Where a SICD NITF keeps its pixels, and reading blocks of them in one request each.

A SICD NITF stores its image row by row (a SICD row is a range line holding every azimuth
sample), in one or more uncompressed image segments. A block of rows is therefore one
contiguous byte range per segment it touches: `read_rows` fetches it with a single read of
an fsspec file opened without a cache, which for http(s) and S3 is one range request, so
each byte of a remote scene is fetched once per build, whatever the number of workers.

The layout comes from the NITF headers (parsed with jbpy, as sarkit's NitfReader does) read
through a small block cache: a few range requests of `HEADER_BLOCK` bytes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

HEADER_BLOCK = 1 << 16
"""bytes per range request while reading headers (a remote scene's header is a few of them)"""

_COMPONENT = {"RE32F_IM32F": ">f4", "RE16I_IM16I": ">i2", "AMP8I_PHS8I": "u1"}
PIXEL_BYTES = {name: 2 * np.dtype(dt).itemsize for name, dt in _COMPONENT.items()}
"""the SICD pixel types read here, with their size in the file"""


@dataclass(frozen=True)
class Segment:
    """One image segment: SICD rows [row0, row1) stored from byte `offset` on."""

    row0: int
    row1: int
    offset: int


@dataclass(frozen=True)
class PixelLayout:
    """Where the pixels of a SICD NITF are, and how to decode them (small: sent to tasks)."""

    rows: int
    cols: int
    pixel_type: str
    segments: tuple[Segment, ...]
    amp_table: tuple[float, ...] | None = None

    @property
    def row_bytes(self) -> int:
        return self.cols * PIXEL_BYTES[self.pixel_type]

    def ranges(self, r0: int, r1: int) -> list[tuple[int, int, int, int]]:
        """(first row, last row + 1, byte offset, byte count) of rows [r0, r1) per segment."""
        out = []
        for seg in self.segments:
            a, b = max(r0, seg.row0), min(r1, seg.row1)
            if a < b:
                out.append(
                    (a, b, seg.offset + (a - seg.row0) * self.row_bytes, (b - a) * self.row_bytes)
                )
        return out


def pixel_layout(
    f: Any, rows: int, cols: int, pixel_type: str, amp_table: Any = None
) -> PixelLayout:
    """The layout of the SICD image in the open NITF `f` (headers only are read).

    Segments are the image segments whose IID1 starts with SICD (all of them in files that
    name none so), in IID1 order, each holding size // row_bytes rows (as sarkit reads them);
    compressed or masked segments are refused."""
    import jbpy

    if pixel_type not in PIXEL_BYTES:
        raise ValueError(f"unsupported pixel type {pixel_type}")
    jbp = jbpy.Jbp().load(f)
    images = list(jbp["ImageSegments"])
    sicd = [s for s in images if str(s["subheader"]["IID1"].value).startswith("SICD")]
    segments = sorted(sicd or images, key=lambda s: str(s["subheader"]["IID1"].value))
    row_bytes = cols * PIXEL_BYTES[pixel_type]
    out, row = [], 0
    for seg in segments:
        ic = str(seg["subheader"]["IC"].value)
        if ic != "NC":
            raise ValueError(f"compressed or masked image segment (IC={ic}) is not supported")
        n = int(seg["Data"].size) // row_bytes
        out.append(Segment(row, row + n, int(seg["Data"].get_offset())))
        row += n
    if row < rows:
        raise ValueError(f"image segments hold {row} of the {rows} rows the SICD declares")
    table = None if amp_table is None else tuple(float(v) for v in amp_table)
    return PixelLayout(rows, cols, pixel_type, tuple(out), table)


def decode(
    raw: bytes | bytearray | memoryview, layout: PixelLayout, n_rows: int
) -> npt.NDArray[np.complex64]:
    """(n_rows, cols) complex64 pixels from their bytes in the file."""
    parts = np.frombuffer(raw, dtype=_COMPONENT[layout.pixel_type]).reshape(n_rows, layout.cols, 2)
    if layout.pixel_type == "AMP8I_PHS8I":
        amp = parts[..., 0].astype(np.float32)
        if layout.amp_table is not None:
            amp = np.asarray(layout.amp_table, dtype=np.float32)[parts[..., 0]]
        phase = parts[..., 1].astype(np.float32) * np.float32(2 * np.pi / 256)
        return (amp * np.exp(1j * phase)).astype(np.complex64)
    out = np.empty((n_rows, layout.cols), dtype=np.complex64)
    out.real = parts[..., 0]
    out.imag = parts[..., 1]
    return out


def read_rows(f: Any, layout: PixelLayout, r0: int, r1: int) -> npt.NDArray[np.complex64]:
    """SICD rows [r0, r1) of the open file `f`, (r1 - r0, cols) complex64: one seek and one
    read per segment the block touches."""
    out = np.empty((r1 - r0, layout.cols), dtype=np.complex64)
    for a, b, offset, count in layout.ranges(r0, r1):
        f.seek(offset, os.SEEK_SET)
        raw = f.read(count)
        if len(raw) != count:
            raise EOFError(f"rows {a}:{b}: {len(raw)} of {count} bytes (truncated file?)")
        out[a - r0 : b - r0] = decode(raw, layout, b - a)
    return out


def write_sicd_nitf(path: str | os.PathLike[str], sicd_xml: str, pixels: Any, source: str) -> None:
    """A SICD NITF written by sarkit's NitfWriter: `pixels` (NumRows, NumCols) complex64 for
    RE32F_IM32F, else raw values of sarkit's dtype for the XML's pixel type; `source` names
    the sensor in the image subheader (ISORCE)."""
    import sarkit.sicd as sksicd
    from lxml import etree

    def security() -> Any:
        return sksicd.NitfSecurityFields(clas="U")

    meta = sksicd.NitfMetadata(
        xmltree=etree.ElementTree(etree.fromstring(sicd_xml.encode())),
        file_header_part=sksicd.NitfFileHeaderPart(ostaid="sarlo-dask", security=security()),
        im_subheader_part=sksicd.NitfImSubheaderPart(isorce=source, security=security()),
        de_subheader_part=sksicd.NitfDeSubheaderPart(security=security()),
    )
    with open(path, "wb") as f, sksicd.NitfWriter(f, meta) as writer:
        writer.write_image(pixels)
