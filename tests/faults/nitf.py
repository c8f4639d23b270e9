"""Broken SICD NITFs made from good ones written by sarpy: XML and pixel edits that keep the
NITF structure (header lengths rewritten with sarpy's NITF header), truncations, DES swaps."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

BILLION_LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE SICD [<!ENTITY a "lol">'
    + b"".join(
        f'<!ENTITY {c} "{("&" + p + ";") * 10}">'.encode()
        for p, c in zip("abcdefgh", "bcdefghi", strict=True)
    )
    + b"]>"
)


def _segments(path: Path):
    from sarpy.io.general.nitf import NITFDetails

    return NITFDetails(str(path))


def with_xml(src: Path, dst: Path, edit: Callable[[bytes], bytes]) -> Path:
    """A copy of `src` whose SICD XML (the last segment) is edit(xml), lengths fixed."""
    data = src.read_bytes()
    nitf = _segments(src)
    head = nitf.nitf_header
    off, size = int(nitf.des_segment_offsets[0]), int(head.DataExtensions.item_sizes[0])
    assert off + size == len(data), "the SICD XML is not the last segment"
    xml = edit(data[off:])
    head.DataExtensions.item_sizes[0] = len(xml)
    head.FL = off + len(xml)
    header = head.to_bytes()
    dst.write_bytes(header + data[len(header) : off] + xml)
    return dst


def with_pixels(src: Path, dst: Path, edit: Callable[[np.ndarray], None]) -> Path:
    """A copy of `src` (RE32F_IM32F, one image segment) with edit() applied to its floats."""
    data = src.read_bytes()
    nitf = _segments(src)
    off = int(nitf.img_segment_offsets[0])
    size = int(nitf.nitf_header.ImageSegments.item_sizes[0])
    floats = np.frombuffer(data[off : off + size], dtype=">f4").copy()
    edit(floats)
    dst.write_bytes(data[:off] + floats.tobytes() + data[off + size :])
    return dst


def external_entity(url: str) -> Callable[[bytes], bytes]:
    def edit(xml: bytes) -> bytes:
        decl = f'<?xml version="1.0"?><!DOCTYPE SICD [<!ENTITY ext SYSTEM "{url}">]>'.encode()
        return decl + xml.replace(b"<CoreName>", b"<CoreName>&ext;", 1)

    return edit


def billion_laughs(xml: bytes) -> bytes:
    return BILLION_LAUGHS + xml.replace(b"<CoreName>", b"<CoreName>&i;", 1)


def not_xml(xml: bytes) -> bytes:
    return xml.replace(b"<SICD ", b"{SICD ", 1)


def without(element: str) -> Callable[[bytes], bytes]:
    def edit(xml: bytes) -> bytes:
        out = re.sub(rf"<{element}>.*?</{element}>".encode(), b"", xml, count=1, flags=re.S)
        assert out != xml
        return out

    return edit


def bad_inputs(folder: Path, good: Path, external_url: str) -> dict[str, str]:
    """Broken copies of `good` in `folder`: file name -> words its refusal must contain."""
    folder.mkdir(parents=True, exist_ok=True)
    data = good.read_bytes()
    des = int(_segments(good).des_segment_offsets[0])
    (folder / "empty.nitf").write_bytes(b"")
    cuts = {
        "cut_file_header": 300,
        "cut_header": 1500,
        "cut_pixels": des // 2,
        "cut_xml": des + 500,
    }
    for name, cut in cuts.items():
        (folder / f"{name}.nitf").write_bytes(data[:cut])
    swapped = data.replace(b"DEXML_DATA_CONTENT", b"DEBINARY_DATA_STUF", 1)
    assert swapped != data
    (folder / "no_sicd_xml.nitf").write_bytes(swapped)
    with_xml(good, folder / "not_xml.nitf", not_xml)
    with_xml(good, folder / "laughs.nitf", billion_laughs)
    with_xml(good, folder / "external.nitf", external_entity(external_url))
    # sarpy derives a missing Position or SCPCOA: GeoData and Grid it cannot
    with_xml(good, folder / "no_geodata.nitf", without("GeoData"))
    with_xml(good, folder / "no_grid.nitf", without("Grid"))

    def nan(f: np.ndarray) -> None:
        f[1000:1010] = np.nan

    def inf(f: np.ndarray) -> None:
        f[-7] = np.inf

    def zero(f: np.ndarray) -> None:
        f[:] = 0

    with_pixels(good, folder / "nan_pixels.nitf", nan)
    with_pixels(good, folder / "inf_pixels.nitf", inf)
    with_pixels(good, folder / "all_zero.nitf", zero)
    return {
        "empty": "empty file",
        "cut_file_header": "not a readable SICD NITF",
        "cut_header": "truncated NITF",
        "cut_pixels": "truncated NITF",
        "cut_xml": "truncated NITF",
        "no_sicd_xml": "Could not find the SICD XML",
        "not_xml": "not well-formed XML",
        "laughs": "declares a DTD",
        "external": "declares a DTD",
        "no_geodata": "missing GeoData.SCP",
        "no_grid": "missing ImageData or Grid",
        "nan_pixels": "non-finite pixels",
        "inf_pixels": "non-finite pixels",
        "all_zero": "no tile kept",
    }
