"""Scenes with a real product's geometry: its SICD XML kept, its pixels simulated.

`simulate_like(xml, path, rows, cols)` keeps the orbit, SCP, grid (spacings, weighting,
spectral skew), radiometry and image formation of a real SICD, re-declares the image as
rows x cols centred on the SCP (ValidData scaled from the product's frame, corners
recomputed), fills it with band-limited clutter shaped by the product's own weighting and
skew plus point targets at known ground positions (sim.scene.synthesize), and writes it with
sarkit's NitfWriter in the product's pixel type. Tests run the pipeline on every geometry of
`../shared/data/sicd-xml/` this way.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from sarlo_dask.geometry.chip import sicd_vertex_order
from sarlo_dask.geometry.sicd import quiet, sicd_from_xml
from sarlo_dask.io.nitf import write_sicd_nitf
from sarlo_dask.sim.scene import SimulationSpec, synthesize

INT16_CLUTTER_RMS = 200.0
"""clutter RMS of RE16I_IM16I products (targets 45 dB above still fit in int16)"""


def _scaled_valid_data(sicd: Any, rows: int, cols: int) -> Any:
    """The product's ValidData mapped onto the new frame, keeping its shape about the SCP."""
    img = sicd.ImageData
    if img.ValidData is None:
        return None
    full_r = img.FullImage.NumRows if img.FullImage is not None else img.NumRows
    full_c = img.FullImage.NumCols if img.FullImage is not None else img.NumCols
    v = img.ValidData.get_array(dtype="float64")
    r = (v[:, 0] - img.SCPPixel.Row) * rows / full_r + rows // 2
    c = (v[:, 1] - img.SCPPixel.Col) * cols / full_c + cols // 2
    out = sicd_vertex_order(np.column_stack([np.clip(r, 0, rows - 1), np.clip(c, 0, cols - 1)]))
    return [tuple(p) for p in out.tolist()] if len(out) >= 3 else None


def like_sicd(xml: str, rows: int, cols: int) -> Any:
    """The product's SICD structure (sarpy) re-declared as a rows x cols image on its SCP."""
    sicd = sicd_from_xml(xml)
    img, grid = sicd.ImageData, sicd.Grid
    valid = _scaled_valid_data(sicd, rows, cols)
    img.NumRows, img.NumCols = rows, cols
    img.FirstRow, img.FirstCol = 0, 0
    img.FullImage = (rows, cols)
    img.SCPPixel = (rows // 2, cols // 2)
    img.ValidData = valid
    for d in (grid.Row, grid.Col):
        if d.WgtFunct is None:
            d.define_weight_function(populate=True)
    # the support bounds over the new frame (the product's are over its own frame)
    x = (np.array([0, rows - 1, rows - 1, 0]) - rows // 2) * grid.Row.SS
    y = (np.array([0, 0, cols - 1, cols - 1]) - cols // 2) * grid.Col.SS
    with quiet():
        grid.Row.estimate_deltak(x, y, populate=True)
        grid.Col.estimate_deltak(x, y, populate=True)
    with quiet():
        sicd.define_geo_image_corners(override=True)
        sicd.GeoData.ValidData = None
        if valid is not None:
            sicd.define_geo_valid_data()
    return sicd


def _poly(d: Any) -> tuple[tuple[float, ...], ...]:
    p = d.DeltaKCOAPoly
    coefs = np.zeros((1, 1)) if p is None else np.atleast_2d(p.get_array(dtype="float64"))
    return tuple(tuple(float(x) for x in row) for row in coefs)


def simulate_like(
    xml: str, path: str | Path, rows: int, cols: int, seed: int = 0, n_targets: int = 9
) -> dict[str, Any]:
    """Write a SICD NITF at `path` with the geometry of the SICD `xml` and simulated pixels;
    the ground truth goes to `path` + '.truth.json'. Returns the truth."""
    import sarkit.sicd as sksicd

    sicd = like_sicd(xml, rows, cols)
    grid = sicd.Grid
    spec = SimulationSpec(
        rows=rows,
        cols=cols,
        row_spacing=float(grid.Row.SS),
        col_spacing=float(grid.Col.SS),
        row_deltakcoa=_poly(grid.Row),
        col_deltakcoa=_poly(grid.Col),
        n_targets=n_targets,
        seed=seed,
    )
    with quiet():
        image, targets = synthesize(spec, sicd)
    pixel_type = str(sicd.ImageData.PixelType)
    if pixel_type == "RE16I_IM16I":
        scaled = image * np.float32(INT16_CLUTTER_RMS)
        raw = np.empty(image.shape, dtype=sksicd.PIXEL_TYPES[pixel_type]["dtype"])
        raw["real"] = np.clip(np.rint(scaled.real), -32768, 32767)
        raw["imag"] = np.clip(np.rint(scaled.imag), -32768, 32767)
    elif pixel_type == "RE32F_IM32F":
        raw = image.astype(np.complex64)
    else:
        raise ValueError(f"simulate --like writes RE32F_IM32F or RE16I_IM16I, not {pixel_type}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = sicd.to_xml_string(tag="SICD", check_validity=False)
    write_sicd_nitf(path, text, raw, "sarlo-dask simulate --like")
    truth = {
        "like": sicd.CollectionInfo.CoreName,
        "rows": rows,
        "cols": cols,
        "pixel_type": pixel_type,
        "scp_ecf": sicd.GeoData.SCP.ECF.get_array().tolist(),
        "targets": [asdict(t) for t in targets],
    }
    Path(str(path) + ".truth.json").write_text(json.dumps(truth, indent=1))
    return truth
