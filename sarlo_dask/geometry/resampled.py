"""The SICD of a resampled image: grid, pixels, spectral support, corners, radiometry.

Given the axis plans of the scene stage (resample.AxisPlan) and the DeltaKCOAPoly left in
the written data, `resampled_sicd` updates a copy of the input's SICD (sarpy's metadata
model: sarkit has none) so that it describes the output as SICD Vol. 1 asks: SS,
ImpRespBW, truncated weighting, DeltaK1/2, SCPPixel, sizes, ValidData, corners, radiometric
scale factors, PFA bounds and processing window, and RMA/INCA's Doppler centroid.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sarlo_dask.geometry.sicd import quiet, spectral_weight


def _kept_power(bw: float, weight: Any, half_band: float) -> float:
    """Fraction of clutter power that survives keeping |k| < half_band of a weighted band."""
    k = np.linspace(-bw / 2, bw / 2, 4097)
    w2 = spectral_weight(k, bw * (1 + 1e-12), weight) ** 2
    return float(w2[np.abs(k) < half_band].sum() / w2.sum())


def _resampled_direction(d: Any, ss_out: float, poly: np.ndarray) -> float:
    """Update one Grid direction in place; return its clutter power ratio."""
    from sarpy.io.complex.sicd_elements.blocks import Poly2DType

    bw_out = min(d.ImpRespBW, 1.0 / ss_out)
    ratio = 1.0
    if bw_out < d.ImpRespBW:
        weight = d.WgtFunct if d.WgtFunct is not None else d.define_weight_function()
        ratio = _kept_power(d.ImpRespBW, weight, bw_out / 2)
        n = 64 if weight is None else len(weight)
        new_weight = spectral_weight(
            np.linspace(-bw_out / 2, bw_out / 2, n) * (1 - 1e-9), d.ImpRespBW, weight
        )
        d.WgtFunct = new_weight
        if (
            d.WgtType is not None
            and d.WgtType.WindowName
            and d.WgtType.WindowName.upper() != "UNIFORM"
        ):
            d.WgtType.WindowName = f"TRUNCATED_{d.WgtType.WindowName}"
        d.ImpRespBW = bw_out
        d.define_response_widths(populate=True)
    d.SS = ss_out
    d.DeltaKCOAPoly = Poly2DType(Coefs=np.atleast_2d(poly))
    return ratio


def _narrow_processing_window(sicd: Any) -> None:
    """PFA: a cropped azimuth band is a sub-aperture; set TStartProc/TEndProc to its times."""
    pfa, form = sicd.PFA, sicd.ImageFormation
    if any(
        v is None
        for v in (pfa.PolarAngPoly, pfa.Kaz1, pfa.Kaz2, pfa.Krg1, form.TStartProc, form.TEndProc)
    ):
        return
    t = np.linspace(form.TStartProc, form.TEndProc, 4001)
    angle = pfa.PolarAngPoly(t)
    order = np.argsort(angle)
    want = np.arctan(np.array([pfa.Kaz1, pfa.Kaz2]) / pfa.Krg1)
    if want.min() < angle.min() or want.max() > angle.max():
        return  # the band was not narrowed in azimuth
    times = np.interp(want, angle[order], t[order])
    form.TStartProc, form.TEndProc = float(times.min()), float(times.max())


def _follow_deskew_inca(sicd: Any, col_poly: np.ndarray) -> None:
    """RMA/INCA with DopCentroidCOA: SICD Vol. 1 ties the azimuth spectrum centre to the
    Doppler centroid, Grid.Col.DeltaKCOAPoly = DopCentroidPoly * TimeCAPoly[1]. The deskew
    moved the data's spectrum centre, so the Doppler centroid of the written data follows it
    (zero where the deskew zeroed the polynomial); TimeCOAPoly, a property of each pixel's
    collection, is unchanged."""
    from sarpy.io.complex.sicd_elements.blocks import Poly2DType

    rma = sicd.RMA
    inca = None if rma is None else rma.INCA
    if inca is None or inca.DopCentroidPoly is None or not inca.DopCentroidCOA:
        return
    slope = float(inca.TimeCAPoly.get_array(dtype="float64")[1:2].sum())
    if slope == 0:
        return
    inca.DopCentroidPoly = Poly2DType(Coefs=np.atleast_2d(col_poly) / slope)


def resampled_sicd(
    sicd: Any, plan_row: Any, plan_col: Any, row_poly: np.ndarray, col_poly: np.ndarray
) -> Any:
    """The SICD structure of the resampled image: grid, pixels, support, corners, radiometry.

    `plan_row` / `plan_col` are the resample.AxisPlan of range / azimuth; the polys are the
    DeltaKCOAPoly of the written data. Pixel (row, col) of the result is slc[azimuth=col,
    range=row] of the standardized array.
    """
    out = sicd.copy()
    img, grid = out.ImageData, out.Grid
    scp_in = (img.SCPPixel.Row, img.SCPPixel.Col)
    ss_in = (grid.Row.SS, grid.Col.SS)
    img.NumRows, img.NumCols = plan_row.n_out, plan_col.n_out
    img.FirstRow, img.FirstCol = 0, 0
    img.FullImage = (plan_row.n_out, plan_col.n_out)
    img.SCPPixel = (plan_row.scp_out, plan_col.scp_out)
    if img.ValidData is not None:
        verts = img.ValidData.get_array(dtype="float64")
        new = []
        for v in verts:
            r = (v[0] - scp_in[0]) * ss_in[0] / plan_row.ss_out + plan_row.scp_out
            c = (v[1] - scp_in[1]) * ss_in[1] / plan_col.ss_out + plan_col.scp_out
            new.append(
                (
                    int(np.clip(round(r), 0, plan_row.n_out - 1)),
                    int(np.clip(round(c), 0, plan_col.n_out - 1)),
                )
            )
        img.ValidData = new
    ratio = _resampled_direction(grid.Row, plan_row.ss_out, row_poly)
    ratio *= _resampled_direction(grid.Col, plan_col.ss_out, col_poly)
    _follow_deskew_inca(out, col_poly)
    rows = (np.array([0, img.NumRows - 1, img.NumRows - 1, 0]) - img.SCPPixel.Row) * grid.Row.SS
    cols = (np.array([0, 0, img.NumCols - 1, img.NumCols - 1]) - img.SCPPixel.Col) * grid.Col.SS
    grid.Row.estimate_deltak(rows, cols, populate=True)
    grid.Col.estimate_deltak(rows, cols, populate=True)
    rad = out.Radiometric
    if rad is not None:
        for name in ("RCSSFPoly", "SigmaZeroSFPoly", "BetaZeroSFPoly", "GammaZeroSFPoly"):
            poly = getattr(rad, name)
            if poly is not None:
                poly.Coefs = poly.Coefs / ratio
        if rad.BetaZeroSFPoly is not None:
            rad.RCSSFPoly = None
            rad._derive_parameters(grid, out.SCPCOA)  # RCS from beta0 and the new pixel area
        noise = rad.NoiseLevel
        if noise is not None and noise.NoiseLevelType == "ABSOLUTE" and noise.NoisePoly:
            noise.NoisePoly.Coefs = noise.NoisePoly.Coefs.copy()
            noise.NoisePoly.Coefs[0, 0] += 10 * np.log10(ratio)
    pfa = out.PFA
    if pfa is not None:  # the image now holds only the kept band of the processed aperture
        for lo, hi, d in (("Krg1", "Krg2", grid.Row), ("Kaz1", "Kaz2", grid.Col)):
            half = 0.5 / d.SS
            if getattr(pfa, lo) is not None:
                setattr(pfa, lo, max(getattr(pfa, lo), d.KCtr - half))
            if getattr(pfa, hi) is not None:
                setattr(pfa, hi, min(getattr(pfa, hi), d.KCtr + half))
        _narrow_processing_window(out)
    with quiet():
        out.define_geo_image_corners(override=True)
        out.GeoData.ValidData = None
        out.define_geo_valid_data()
    return out
