"""SICD I/O with sarpy: headers, checks, lazy xarray scenes, small metadata helpers.

Naming, written down once: a SICD row is a range sample and a column an azimuth sample
(Grid.Type RGAZIM, the PFA case). sarpy's ``reader[:, :]`` is (NumRows, NumCols) =
(range, azimuth). This project's arrays are (azimuth, range): ``slc[azimuth=c, range=r]`` is
SICD pixel (row=r, col=c).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

from sarlo_dask.errors import (
    SceneError,
    access_denied,
    caused_by_other,
    exception_chain,
    one_line,
    redact,
    refusals_travel,
)
from sarlo_dask.io.nitf import HEADER_BLOCK, PIXEL_BYTES, PixelLayout, pixel_layout, read_rows
from sarlo_dask.io.readers import SceneReader, reader_for, sanitize_key, scene_id_from_url
from sarlo_dask.store import input_options, is_local_path, s3_endpoint

SPEED_OF_LIGHT = 299792458.0


def pass_id(sicd: Any) -> str:
    """A satellite-pass id: collector and collect start to the second."""
    collector = sicd.CollectionInfo.CollectorName or "unknown"
    start = np.datetime_as_string(np.datetime64(sicd.Timeline.CollectStart, "s"))
    return sanitize_key(f"{collector}_{start.replace('-', '').replace(':', '')}")


def spectral_weight(k: npt.ArrayLike, bw: float, weight: npt.ArrayLike | None) -> np.ndarray:
    """Aperture weight at spatial frequencies `k` (cycles/m about KCtr); zero outside |k| < bw/2.

    `weight` is a SICD WgtFunct: samples spread evenly across the impulse-response bandwidth.
    """
    k = np.asarray(k, dtype="float64")
    w = np.ones(2) if weight is None else np.asarray(weight, dtype="float64")
    inside = np.abs(k) < bw / 2
    return np.where(inside, np.interp(k, np.linspace(-bw / 2, bw / 2, w.size), w), 0.0)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """sarpy and jbpy log and warn loudly about NITF fields and deprecations; keep errors only."""
    import logging

    loggers = [logging.getLogger(n) for n in ("sarpy", "validation", "sarkit", "jbpy")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _open_reader(source: Any, where: str) -> Any:
    """A sarpy SICD reader over an open binary file object (read_header checked that the
    file exists and is not empty).

    sarpy, not sarkit: sarkit 1.8's NitfReader takes the SICD from the first DES only and
    has no metadata model; sarpy's reader finds the SICD DES and derives the fields older
    products omit (Position, SCPCOA), which the checks and the resampled SICD use."""
    from sarpy.io.complex.sicd import SICDDetails, SICDReader

    _refuse_xml_declarations(source, where)
    try:
        with quiet():
            details = SICDDetails(source)
            if not details.is_sicd:
                raise SceneError(where, "a NITF without SICD XML (not a SICD)")
            reader = SICDReader(details)
    except SceneError:
        raise
    except Exception as exc:  # sarpy raises many types for bad files
        short = _truncation(source)
        if short:
            raise SceneError(where, short) from None
        raise SceneError(where, f"not a readable SICD NITF ({one_line(exc)})") from None
    return reader


def _refuse_xml_declarations(source: Any, where: str) -> None:
    """Refuse a NITF whose XML segments declare a DTD or entities (billion laughs, external
    entities), before sarpy's parser sees them: SICD XML has neither. (sarpy's NITFDetails
    lists the segments: the same parser that reads the SICD next, so both see the same
    segments.)"""
    from defusedxml import DefusedXmlException
    from defusedxml.ElementTree import fromstring
    from sarpy.io.general.nitf import NITFDetails

    try:
        with quiet():
            nitf = NITFDetails(source)
            n = 0 if nitf.des_subheader_offsets is None else nitf.des_subheader_offsets.size
            segments = [nitf.get_des_bytes(i) for i in range(n)]
    except Exception:
        return  # not a readable NITF: _open_reader says why
    broken: list[str] = []
    has_sicd = False
    for i, data in enumerate(segments):
        try:
            root = fromstring(data.strip(), forbid_dtd=True)
        except DefusedXmlException as exc:
            what = _DECLARED.get(type(exc).__name__, type(exc).__name__)
            raise SceneError(
                where,
                f"XML in NITF data extension segment {i} declares {what}: refused "
                "(entity expansion and external fetches are never parsed)",
            ) from None
        except Exception as exc:
            if nitf.get_des_subheader_bytes(i).startswith((b"DEXML_DATA_CONTENT", b"DESICD_XML")):
                broken.append(
                    f"the SICD XML in NITF data extension segment {i} is not well-formed "
                    f"XML ({one_line(exc)})"
                )
            continue  # another kind of segment: sarpy decides what it is
        has_sicd = has_sicd or root.tag.rsplit("}", 1)[-1] == "SICD"
    if broken and not has_sicd:  # extra segments beside a well-formed SICD are not read
        raise SceneError(where, _truncation(source) or broken[0])


_DECLARED = {
    "DTDForbidden": "a DTD",
    "EntitiesForbidden": "entities",
    "ExternalReferenceForbidden": "an external reference",
}


def _truncation(source: Any) -> str:
    """'truncated NITF ...' when the header of the open NITF `source` declares more bytes
    than there are, else ''."""
    from sarpy.io.general.nitf import NITFDetails

    try:
        with quiet():
            declared = int(NITFDetails(source).nitf_header.FL)
        size = int(source.seek(0, 2))
    except Exception:
        return ""
    if size < declared:
        return f"truncated NITF: {size} of the {declared} bytes its header declares"
    return ""


def _open_input(url: str, storage_options: dict[str, Any] | None, header: bool) -> Any:
    """A binary file object for a scene: local files as they are; remote ones through fsspec,
    with a small block cache for headers or with none for pixel blocks (one range request
    per read)."""
    import fsspec

    if is_local_path(url):
        return open(url.removeprefix("file://"), "rb")  # noqa: SIM115 (closed by the caller)
    fs, path = fsspec.core.url_to_fs(url, **input_options(url, storage_options))
    if header:  # the blocks stay cached: parsers seek between the start and the end
        return fs.open(path, "rb", block_size=HEADER_BLOCK, cache_type="blockcache")
    return fs.open(path, "rb", cache_type="none")


def read_header(
    url: str, storage_options: dict[str, Any] | None = None
) -> tuple[Any, PixelLayout | SceneReader]:
    """The SICD structure (sarpy SICDType: sarkit 1.8 has no object model with the derived
    fields the checks use) and the pixel layout of the scene at `url`, or a SceneError.

    Only headers are read: for a remote scene, a few range requests of HEADER_BLOCK bytes.
    A URL another scene reader claims (sarlo_dask.io.readers) is read by it: its layout is the
    reader itself."""
    if is_local_path(url) and not os.path.exists(url.removeprefix("file://")):
        raise SceneError(url, "file not found")
    try:
        if (reader := reader_for(url)) is not None:
            return reader.sicd(url, storage_options), reader
    except SceneError:
        raise
    except Exception as exc:  # the reader's, or an installed reader that cannot be loaded
        raise _unreadable(exc, url, storage_options) from None
    try:
        with _open_input(url, storage_options, header=True) as f:
            if f.seek(0, os.SEEK_END) == 0:
                raise SceneError(url, "empty file, not a SICD NITF")
            f.seek(0)
            reader = _open_reader(f, url)
            try:
                sicd = reader.sicd_meta.copy()
            finally:
                reader.close()
            img = sicd.ImageData
            if img is None or img.PixelType not in PIXEL_BYTES:
                return sicd, PixelLayout(0, 0, "", ())  # check_sicd says why
            try:
                f.seek(0)
                with quiet():  # jbpy warns of every blank optional field
                    layout = pixel_layout(
                        f, int(img.NumRows), int(img.NumCols), str(img.PixelType), img.AmpTable
                    )
            except Exception as exc:
                raise SceneError(url, _truncation(f) or f"pixel layout: {one_line(exc)}") from None
            return sicd, layout
    except SceneError:
        raise
    except Exception as exc:
        raise _unreadable(exc, url, storage_options) from None


def _unreadable(exc: BaseException, url: str, storage_options: dict[str, Any] | None) -> SceneError:
    """Why a scene's header cannot be read, on one line: access denied (401/403, S3's
    AccessDenied), no such object, or the exception chain."""
    if denied := access_denied(exc):
        return SceneError(url, denied)
    if not isinstance(exc, FileNotFoundError) or caused_by_other(exc):
        return SceneError(url, f"cannot read ({exception_chain(exc)})")
    where = f" at {s3_endpoint(storage_options)}" if url.startswith(("s3://", "s3a://")) else ""
    return SceneError(url, f"no such object{where} ({one_line(exc)})")


def read_sicd_meta(url: str, storage_options: dict[str, Any] | None = None) -> Any:
    """The SICD structure of the scene at `url` (sarpy SICDType), or a SceneError."""
    return read_header(url, storage_options)[0]


@refusals_travel
def _read_block(
    url: str,
    storage_options: dict[str, Any] | None,
    layout: PixelLayout | SceneReader,
    r0: int,
    r1: int,
    cols: int,
) -> np.ndarray:
    """SICD rows r0:r1 (range lines, every azimuth sample), (r1 - r0, cols) complex64:
    one range request per image segment touched (or what the scene's reader reads)."""
    try:
        if isinstance(layout, SceneReader):
            out = np.asarray(layout.rows(url, storage_options, r0, r1), dtype=np.complex64)
            if out.shape != (r1 - r0, cols):  # a short or transposed block: said, not used
                raise SceneError(url, f"its reader gave {out.shape} for rows {r0}:{r1}")
        else:
            with _open_input(url, storage_options, header=False) as f:
                out = read_rows(f, layout, r0, r1)
    except SceneError:
        raise
    except Exception as exc:
        why = access_denied(exc) or f"pixel read failed ({one_line(exc)}); truncated file?"
        raise SceneError(url, f"{why} (rows {r0}:{r1})") from None
    bad = out.size - int(np.count_nonzero(np.isfinite(out)))
    if bad:  # the FFT would spread them over the whole block: nothing to keep
        raise SceneError(
            url, f"{bad} non-finite pixels (NaN or inf) in range rows {r0}:{r1}", "standardize"
        )
    return out


def open_sicd(
    url: str, chunk_range: int = 1024, storage_options: dict[str, Any] | None = None
) -> Any:
    """Open a SICD lazily as an xarray Dataset with `slc` (azimuth, range), chunked over range.

    A chunk is `chunk_range` SICD rows (range lines) with every azimuth sample: contiguous in
    the file, so each is read in one request and each byte of the file once. Coordinates are
    SICD pixel indices (column for azimuth, row for range); attrs hold the SICD XML, the scene
    id and the pass id. Nothing but the header is read here.
    """
    import dask
    import dask.array as da

    sicd, layout = read_header(url, storage_options)
    n_rg, n_az = int(sicd.ImageData.NumRows), int(sicd.ImageData.NumCols)
    blocks = []
    for r0 in range(0, n_rg, chunk_range):
        r1 = min(n_rg, r0 + chunk_range)
        task = dask.delayed(_read_block, pure=True)(url, storage_options, layout, r0, r1, n_az)
        blocks.append(da.from_delayed(task, shape=(r1 - r0, n_az), dtype=np.complex64))
    rows = da.concatenate(blocks, axis=0) if blocks else da.zeros((0, n_az), np.complex64)
    return scene_dataset(rows.T, sicd, url)


def scene_dataset(slc: Any, sicd: Any, url: str) -> Any:
    """The Dataset `open_sicd` gives: `slc` (azimuth, range) of the SICD `sicd` read from `url`,
    its pixel-index coordinates and the attrs the scene stage needs."""
    import xarray as xr

    n_az, n_rg = slc.shape
    return xr.Dataset(
        {"slc": (("azimuth", "range"), slc)},
        coords={
            "azimuth": np.arange(n_az) + sicd.ImageData.FirstCol,
            "range": np.arange(n_rg) + sicd.ImageData.FirstRow,
        },
        attrs={
            "sicd_xml": sicd.to_xml_string(tag="SICD"),
            "scene_id": scene_id_from_url(url),
            "pass_id": pass_id(sicd),
            "source_url": redact(url),  # written to the store: no credentials
        },
    )


def sicd_from_xml(xml: str) -> Any:
    """Parse SICD XML into sarpy's metadata model (sarkit has none: the grid algebra of the
    resampled SICD works on it), refusing DTDs and entities first (XXE, billion laughs)."""
    import defusedxml.ElementTree as safe_et
    from sarpy.io.complex.sicd_elements.SICD import SICDType

    safe_et.fromstring(xml.encode() if isinstance(xml, str) else xml, forbid_dtd=True)
    with quiet():
        return SICDType.from_xml_string(xml)
