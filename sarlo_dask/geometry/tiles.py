"""Tiles of a standardized scene: windows, validity, amplitude previews, geometry fields.

Pure functions on arrays and SICD structures; the pipeline reads the scene store and writes.

Edge policy: only whole windows. Along an axis of n pixels there are
``floor((n - size) / stride) + 1`` windows starting at 0, stride, 2 stride, ...; the strip
past the last whole window (less than a stride) is left out, never padded.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sarlo_dask.geometry.acquisition import footprint
from sarlo_dask.geometry.geolocation import llh_to_ecf


@dataclass(frozen=True)
class Window:
    scene_id: str
    ia: int
    ir: int
    a0: int
    r0: int
    size: int

    @property
    def key(self) -> str:
        """Letters, digits, `_` and `-` only: webdataset splits member names at dots."""
        return f"{self.scene_id}_a{self.ia:03d}_r{self.ir:03d}"

    def slices(self) -> tuple[slice, slice]:
        return slice(self.a0, self.a0 + self.size), slice(self.r0, self.r0 + self.size)


def tile_corners(size: int) -> np.ndarray:
    """Tile-local (azimuth, range) of the four corner pixels, in meta.json's corner order."""
    last = size - 1
    return np.array([[0, 0], [0, last], [last, last], [last, 0]], dtype="float64")


def window_starts(n: int, size: int, stride: int) -> list[int]:
    if n < size:
        return []
    return list(range(0, n - size + 1, stride))


def tile_windows(
    scene_id: str, n_az: int, n_rg: int, size: int = 1024, stride: int = 512
) -> list[Window]:
    """Every whole window, row-major over (azimuth, range)."""
    return [
        Window(scene_id, ia, ir, a0, r0, size)
        for ia, a0 in enumerate(window_starts(n_az, size, stride))
        for ir, r0 in enumerate(window_starts(n_rg, size, stride))
    ]


def tile_groups(windows: Sequence[Window], band: int = 4, columns: int = 4) -> list[list[Window]]:
    """Windows in groups that share optical tiles: `band` window rows by up to `columns`
    window columns, each group column by column (down the band, then right).

    A window shares half its optical tiles with each neighbour; in this order those of the
    windows above and to the left are still in a worker's decoded-tile cache (see
    `optical.mosaic.DECODED`, 512 MB by default: about four windows' tiles at zoom 19),
    which row-major order loses once a row of windows outgrows it.
    """
    groups: dict[tuple[str, int, int], list[Window]] = {}
    for w in windows:
        groups.setdefault((w.scene_id, w.ia // band, w.ir // columns), []).append(w)
    return [
        sorted(g, key=lambda w: (w.ir, w.ia))
        for _, g in sorted(groups.items(), key=lambda kv: kv[0])
    ]


def polygon_mask(vertices: np.ndarray, a0: int, r0: int, size: int) -> np.ndarray:
    """(size, size) bool: pixels (azimuth, range) inside a polygon given as (row, col) vertices.

    SICD ValidData vertices are (row = range, col = azimuth); even-odd rule at pixel centres.
    """
    a = np.arange(a0, a0 + size, dtype="float64")[:, None]
    r = np.arange(r0, r0 + size, dtype="float64")[None, :]
    inside = np.zeros((size, size), dtype=bool)
    vr, va = vertices[:, 0].astype("float64"), vertices[:, 1].astype("float64")
    n = len(vertices)
    for i in range(n):
        r1, a1, r2, a2 = vr[i], va[i], vr[(i + 1) % n], va[(i + 1) % n]
        if r1 == r2:
            continue
        crosses = (r >= min(r1, r2)) & (r < max(r1, r2))
        a_at = a1 + (r - r1) * (a2 - a1) / (r2 - r1)
        inside ^= crosses & (a <= a_at)
    # points exactly on the polygon's boundary count as inside (only those outside can change)
    out_a, out_r = np.nonzero(~inside)
    if out_a.size:
        inside[out_a, out_r] = _on_boundary(vr, va, out_a + float(a0), out_r + float(r0))
    return inside


def _on_boundary(vr: np.ndarray, va: np.ndarray, a: np.ndarray, r: np.ndarray) -> np.ndarray:
    out = np.zeros(np.broadcast_shapes(a.shape, r.shape), dtype=bool)
    n = len(vr)
    for i in range(n):
        r1, a1, r2, a2 = vr[i], va[i], vr[(i + 1) % n], va[(i + 1) % n]
        cross = (r - r1) * (a2 - a1) - (a - a1) * (r2 - r1)
        within = (r >= min(r1, r2)) & (r <= max(r1, r2)) & (a >= min(a1, a2)) & (a <= max(a1, a2))
        out |= within & (np.abs(cross) < 1e-9)
    return out


def valid_fraction(patch: np.ndarray, polygon: np.ndarray | None) -> float:
    """Fraction of pixels inside the ValidData polygon (if any) and non-zero (complex
    samples or their amplitudes)."""
    ok = np.abs(patch) > 0
    if polygon is not None:
        ok &= polygon
    return float(ok.mean())


@dataclass(frozen=True)
class PreviewSpec:
    """Log amplitude, clipped to percentiles of the tile's non-zero pixels, scaled to 8 bits."""

    low_percentile: float = 1.0
    high_percentile: float = 99.0
    fmt: str = "png"
    jpeg_quality: int = 90


def db_preview(
    power: np.ndarray, spec: PreviewSpec = PreviewSpec()
) -> tuple[np.ndarray, tuple[float, float]]:
    """(uint8 image, (lo, hi) dB): 10 log10 power clipped to [p_low, p_high] -> 1..255, 0 = none.

    Percentiles are taken over the non-zero pixels, so invalid borders do not stretch it.
    """
    valid = power > 0
    if not valid.any():
        return np.zeros(power.shape, dtype=np.uint8), (0.0, 0.0)
    # float32 is ample for 8-bit output (and halves the memory traffic)
    db = np.zeros(power.shape, dtype=np.float32)
    np.log10(power, out=db, where=valid, dtype=np.float32)
    db *= 10
    values = db[valid]  # a copy, which the percentiles may then reorder in place
    lo, hi = (
        float(v)
        for v in np.percentile(
            values, [spec.low_percentile, spec.high_percentile], overwrite_input=True
        )
    )
    scaled = np.clip((db - np.float32(lo)) * np.float32(254 / max(hi - lo, 1e-12)), 0, 254)
    scaled += 1.5  # 1..255; +0.5 so that the truncation rounds
    return np.where(valid, scaled, 0).astype(np.uint8), (lo, hi)


def amplitude_preview(patch: np.ndarray, spec: PreviewSpec = PreviewSpec()) -> np.ndarray:
    """uint8 image of 20 log10 |z| (see db_preview)."""
    return db_preview(np.abs(patch).astype("float64") ** 2, spec)[0]


def sigma0(power: np.ndarray, sicd: Any, a0: int, r0: int) -> np.ndarray | None:
    """sigma0 = SigmaZeroSFPoly(x_row, y_col) |z|^2 from the SICD (`power` is |z|^2 of the
    tile at (a0, r0)), or None without radiometry."""
    rad = sicd.Radiometric
    if rad is None or rad.SigmaZeroSFPoly is None:
        return None
    grid, img = sicd.Grid, sicd.ImageData
    az = np.arange(a0, a0 + power.shape[0])
    rg = np.arange(r0, r0 + power.shape[1])
    x = (rg + img.FirstRow - img.SCPPixel.Row) * grid.Row.SS
    y = (az + img.FirstCol - img.SCPPixel.Col) * grid.Col.SS
    from numpy.polynomial import polynomial

    sf = polynomial.polygrid2d(x, y, rad.SigmaZeroSFPoly.get_array(dtype="float64")).T
    return sf * power


def encode_image(
    image: np.ndarray,
    fmt: str = "png",
    quality: int = 90,
    compress_level: int = 1,
    speckle: bool = False,
) -> bytes:
    """PNG (lossless, no timestamps) or JPEG bytes; same pixels give the same bytes.

    `speckle`: the image is a SAR preview, which deflate barely shrinks whatever it tries;
    zlib's run-length strategy makes as small a PNG in about 70% of the time.
    """
    from PIL import Image

    buf = io.BytesIO()
    h, w = image.shape[:2]
    if image.ndim == 3 and image.shape[2] == 3 and image.strides == (4 * w, 4, 1):
        # RGB viewed in packed RGBA (the warp's output): PIL reads the RGBX bytes as they are
        rgbx = np.lib.stride_tricks.as_strided(image, (h, w, 4), image.strides)
        pil = Image.frombytes("RGB", (w, h), rgbx, "raw", "RGBX")
    else:
        pil = Image.fromarray(image)
    if fmt.lower() in ("jpg", "jpeg"):
        pil.save(buf, format="JPEG", quality=quality, optimize=False)
    elif fmt.lower() == "png":
        strategy = zlib.Z_RLE if speckle else zlib.Z_DEFAULT_STRATEGY
        pil.save(
            buf,
            format="PNG",
            optimize=False,
            compress_level=compress_level,
            compress_type=strategy,
        )
    else:
        raise ValueError(f"preview format {fmt!r}: use png or jpg")
    return buf.getvalue()


def tile_llh(
    grid_lat: Any, grid_lon: Any, grid_hae: Any, az: np.ndarray, rg: np.ndarray
) -> np.ndarray:
    """(N, 3) lat, lon, hae at pixel pairs (az[i], rg[i]), bilinear in the tie points."""
    return tie_point_fields((grid_lat, grid_lon, grid_hae), az, rg)


def tie_point_fields(grids: Sequence[Any], az: np.ndarray, rg: np.ndarray) -> np.ndarray:
    """(N, len(grids)): each tie-point grid at pixel pairs (az[i], rg[i]), bilinear."""
    from scipy.interpolate import RegularGridInterpolator

    pts = np.column_stack([az, rg]).astype("float64")
    out = []
    for g in grids:
        f = RegularGridInterpolator(
            (g.tp_azimuth.values.astype("float64"), g.tp_range.values.astype("float64")), g.values
        )
        out.append(f(pts))
    return np.column_stack(out)


def _border_and_inner(w: Window, tp_az: np.ndarray, tp_rg: np.ndarray) -> np.ndarray:
    """Pixels where a bilinear field on the tile takes its extremes: the border and tie points."""
    s = np.arange(w.size)
    last = w.size - 1
    a = np.concatenate([s, s, np.zeros(w.size), np.full(w.size, last)]) + w.a0
    r = np.concatenate([np.zeros(w.size), np.full(w.size, last), s, s]) + w.r0
    ia = tp_az[(tp_az > w.a0) & (tp_az < w.a0 + last)]
    ir = tp_rg[(tp_rg > w.r0) & (tp_rg < w.r0 + last)]
    ga, gr = np.meshgrid(ia, ir, indexing="ij")
    return np.column_stack([np.concatenate([a, ga.ravel()]), np.concatenate([r, gr.ravel()])])


def incidence_deg(sicd: Any, ground_ecf: np.ndarray) -> float:
    """Angle between the line of sight (ARP at the SCP's COA time) and the ellipsoid normal."""
    from sarkit.wgs84 import cartesian_to_geodetic, up

    t_coa = sicd.SCPCOA.SCPTime
    arp = sicd.Position.ARPPoly(t_coa)
    los = arp - ground_ecf
    normal = up(cartesian_to_geodetic(np.asarray(ground_ecf, dtype="float64")))
    c = np.dot(los, normal) / np.linalg.norm(los)
    return float(np.degrees(np.arccos(np.clip(c, -1, 1))))


def tile_geometry(w: Window, ds: Any, sicd: Any, source_sicd: Any) -> dict[str, Any]:
    """The geometry fields of the published meta.json for one window of a scene store."""
    pts = _border_and_inner(w, ds.tp_azimuth.values, ds.tp_range.values)
    llh = tile_llh(ds.lat, ds.lon, ds.hae, pts[:, 0], pts[:, 1])
    ecf = llh_to_ecf(llh)
    last = w.size - 1
    corners_px = tile_corners(w.size) + [w.a0, w.r0]
    corners = tile_llh(ds.lat, ds.lon, ds.hae, corners_px[:, 0], corners_px[:, 1])
    centre = tile_llh(
        ds.lat, ds.lon, ds.hae, np.array([w.a0 + last / 2]), np.array([w.r0 + last / 2])
    )
    centre_ecf = llh_to_ecf(centre)[0]
    return {
        "crop": {"azimuth": [w.a0, w.a0 + w.size], "range": [w.r0, w.r0 + w.size]},
        "Nb_pixel_a": w.size,
        "Nb_pixel_r": w.size,
        "ss_row": float(source_sicd.Grid.Row.SS),
        "ss_col": float(source_sicd.Grid.Col.SS),
        "spacing_eff_az": float(sicd.Grid.Col.SS),
        "spacing_eff_rg": float(sicd.Grid.Row.SS),
        "scp_row": int(sicd.ImageData.SCPPixel.Row),
        "scp_col": int(sicd.ImageData.SCPPixel.Col),
        "bbox_ecf": [ecf.min(axis=0).tolist(), ecf.max(axis=0).tolist()],
        "bbox_llh": [llh.min(axis=0).tolist(), llh.max(axis=0).tolist()],
        "corners_llh": corners.tolist(),
        "footprint": footprint(llh),
        "centre_llh": centre[0].tolist(),
        "incidence_angles": {
            "ellipsoid_deg": incidence_deg(sicd, centre_ecf),
            "sicd_deg": float(sicd.SCPCOA.IncidenceAng),
            "terrain_deg": None,
            "terrain_deg_reason": "no DEM: heights are the SCP's, terrain slopes unknown",
        },
    }


def _lee_kernels() -> np.ndarray:
    """The eight edge-aligned 7x7 half windows of the refined Lee filter, (8, 7, 7) bool.

    Order: up, down, left, right (rows / columns through the centre included), lower-left,
    upper-right (main diagonal included), upper-left, lower-right (anti-diagonal included).
    """
    i, j = np.mgrid[0:7, 0:7]
    return np.stack([i <= 3, i >= 3, j <= 3, j >= 3, i >= j, i <= j, i + j <= 6, i + j >= 6])


def refined_lee(power: np.ndarray, looks: float = 1.0) -> np.ndarray:
    """Refined Lee filter (Lee 1981) of an intensity image: 7x7, edge-aligned windows.

    The 3x3 means at the nine sub-window centres of the 7x7 window give four gradients; the
    strongest picks the edge orientation and the side more like the centre picks one of eight
    half windows, whose mean and variance drive the Lee MMSE weight (speckle variance
    1 / looks). Zero pixels (no data) stay zero.
    """
    from scipy import ndimage

    p = power.astype("float64")
    h, w = p.shape
    m3 = np.pad(ndimage.uniform_filter(p, 3, mode="reflect"), 2, mode="reflect")
    sm = [m3[2 + da : 2 + da + h, 2 + dr : 2 + dr + w] for da in (-2, 0, 2) for dr in (-2, 0, 2)]
    grads = np.stack(
        [np.abs(sm[1] - sm[7]), np.abs(sm[6] - sm[2]), np.abs(sm[3] - sm[5]), np.abs(sm[0] - sm[8])]
    )
    orient = grads.argmax(axis=0)
    centre = sm[4]
    # per orientation: (kernel if the first side is more like the centre, else the other)
    sides = [(1, 7, 0, 1), (6, 2, 4, 5), (3, 5, 2, 3), (0, 8, 6, 7)]
    choice = np.zeros((h, w), dtype=np.int64)
    for o, (a, b, first, second) in enumerate(sides):
        pick = np.where(np.abs(sm[a] - centre) <= np.abs(sm[b] - centre), first, second)
        choice = np.where(orient == o, pick, choice)
    kernels = _lee_kernels().astype("float64")
    mean = np.empty((8, h, w))
    meansq = np.empty((8, h, w))
    for k, kern in enumerate(kernels):
        n = kern.sum()
        mean[k] = ndimage.correlate(p, kern, mode="reflect") / n
        meansq[k] = ndimage.correlate(p * p, kern, mode="reflect") / n
    mu = np.take_along_axis(mean, choice[None], 0)[0]
    var_z = np.maximum(np.take_along_axis(meansq, choice[None], 0)[0] - mu * mu, 0)
    sv2 = 1.0 / looks
    var_x = np.maximum((var_z - mu * mu * sv2) / (1 + sv2), 0)
    b = np.divide(var_x, var_z, out=np.zeros_like(var_z), where=var_z > 0)
    out = mu + b * (p - mu)
    return np.where(p > 0, np.maximum(out, 0), 0)
