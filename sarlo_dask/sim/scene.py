"""Synthetic spotlight PFA SICD scenes with ground truth: the demo's input and the tests' oracle.

Band-limited speckle (declared sigma0 and receiver noise) plus point targets, made in the
spatial-frequency domain with the aperture weighting, optionally skewed by a DeltaKCOAPoly,
written by sarkit (sarpy builds the metadata model: sarkit 1.8 has none). The truth file
beside the NITF holds the targets' pixels, ECEF and lat/lon/hae: on flat ground at `hae`, or
with `relief_m` on a terrain whose DEM is written beside it (sim.terrain)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from numpy.polynomial import polynomial

from sarlo_dask.geometry.sicd import spectral_weight
from sarlo_dask.sim.sicd import fit_collect_duration, noise_power
from sarlo_dask.sim.spec import DEFAULT_COLLECT_START as DEFAULT_COLLECT_START
from sarlo_dask.sim.spec import SimulationSpec as SimulationSpec
from sarlo_dask.sim.spec import spec_record as spec_record


@dataclass(frozen=True)
class Target:
    row: float
    col: float
    ecf: tuple[float, float, float]
    llh: tuple[float, float, float]
    amplitude: float


def _support(n: int, ss: float, bw: float, weight: np.ndarray) -> np.ndarray:
    """The DFT-ordered spectral weight of one direction (zero outside |k| < bw/2)."""
    k = np.fft.fftfreq(n, d=ss)
    return spectral_weight(k, bw, weight)


def _pick_targets(spec: SimulationSpec, rng: np.random.Generator) -> np.ndarray:
    margin_r = max(64, spec.rows // 8)
    margin_c = max(64, spec.cols // 8)
    if spec.rows <= 2 * margin_r or spec.cols <= 2 * margin_c:
        return np.zeros((0, 2))
    rows = rng.uniform(margin_r, spec.rows - margin_r, spec.n_targets)
    cols = rng.uniform(margin_c, spec.cols - margin_c, spec.n_targets)
    return np.column_stack([rows, cols])


def synthesize(spec: SimulationSpec, sicd: Any) -> tuple[npt.NDArray[np.complex64], list[Target]]:
    """The pixels (NumRows, NumCols) and targets of a scene, in the product's conventions."""
    from sarpy.geometry import geocoords

    # the truth comes from sarpy's projection: independent of the pipeline's (sarkit's)
    from sarpy.geometry.point_projection import image_to_ground
    from sarpy.processing.sicd.normalize_sicd import apply_skew_poly

    rng = np.random.default_rng(spec.seed)
    grid = sicd.Grid
    wr = _support(spec.rows, grid.Row.SS, grid.Row.ImpRespBW, grid.Row.WgtFunct)
    wc = _support(spec.cols, grid.Col.SS, grid.Col.ImpRespBW, grid.Col.WgtFunct)
    if spec.ground:
        clutter = _landscape(spec, sicd, np.outer(wr, wc))
    else:
        spectrum = rng.standard_normal((spec.rows, spec.cols)) + 1j * rng.standard_normal(
            (spec.rows, spec.cols)
        )
        spectrum *= np.outer(wr, wc)
        clutter = np.fft.ifft2(spectrum)
        clutter /= np.sqrt(np.mean(np.abs(clutter) ** 2))
    if noise_power(spec):  # its own stream: the clutter and targets do not depend on it
        white = np.random.default_rng([spec.seed, 1]).standard_normal((2, spec.rows, spec.cols))
        noise = np.fft.ifft2((white[0] + 1j * white[1]) * np.outer(wr, wc))
        clutter += noise * np.sqrt(noise_power(spec) / np.mean(np.abs(noise) ** 2))

    pixels = _pick_targets(spec, rng)
    peak_gain = wr.sum() * wc.sum() / (spec.rows * spec.cols)
    amplitude = 10 ** (spec.target_db / 20) / peak_gain
    n_r, n_c = np.fft.fftfreq(spec.rows), np.fft.fftfreq(spec.cols)
    target_spec = np.zeros((spec.rows, spec.cols), dtype=np.complex128)
    phases = rng.uniform(0, 2 * np.pi, len(pixels))
    for (pr, pc), ph in zip(pixels, phases, strict=True):
        target_spec += (
            amplitude
            * np.exp(1j * ph)
            * np.outer(wr * np.exp(-2j * np.pi * n_r * pr), wc * np.exp(-2j * np.pi * n_c * pc))
        )
    image = clutter + np.fft.ifft2(target_spec)

    if spec.skewed():
        row_m = (np.arange(spec.rows) - sicd.ImageData.SCPPixel.Row) * grid.Row.SS
        col_m = (np.arange(spec.cols) - sicd.ImageData.SCPPixel.Col) * grid.Col.SS
        # skew the centred spectrum: inverse of sarpy's deskew, column (azimuth) axis first
        image = apply_skew_poly(
            image, grid.Col.DeltaKCOAPoly.get_array(), row_m, col_m, grid.Col.Sgn, 1, forward=True
        )
        image = apply_skew_poly(
            image, grid.Row.DeltaKCOAPoly.get_array(), row_m, col_m, grid.Row.Sgn, 0, forward=True
        )

    targets: list[Target] = []
    if len(pixels):
        ecf = image_to_ground(pixels, sicd, projection_type="HAE")
        llh = geocoords.ecf_to_geodetic(ecf)
        targets = [
            Target(
                float(p[0]),
                float(p[1]),
                (float(e[0]), float(e[1]), float(e[2])),
                (float(g[0]), float(g[1]), float(g[2])),
                float(amplitude * peak_gain),
            )
            for p, e, g in zip(pixels, ecf, llh, strict=True)
        ]
    return image.astype(np.complex64), targets


def _landscape(spec: SimulationSpec, sicd: Any, weight: np.ndarray) -> np.ndarray:
    """The clutter of the scene's landscape (sim.ground), each pixel where sarpy projects
    it onto the ground at `hae` (a 17 x 17 grid, cubic in between: centimetres)."""
    from sarpy.geometry import geocoords
    from sarpy.geometry.point_projection import ground_to_image, image_to_ground
    from scipy.interpolate import RectBivariateSpline

    from sarlo_dask.sim.ground import Ground, landscape_clutter

    ground = Ground(spec.lat, spec.lon, spec.seed)
    r, c = np.linspace(0, spec.rows - 1, 17), np.linspace(0, spec.cols - 1, 17)
    grid = np.stack(np.meshgrid(r, c, indexing="ij"), axis=-1).reshape(-1, 2)
    llh = geocoords.ecf_to_geodetic(image_to_ground(grid, sicd, projection_type="HAE"))
    east, north = (a.reshape(17, 17) for a in ground.local(llh[:, 0], llh[:, 1]))
    rows, cols = np.arange(spec.rows), np.arange(spec.cols)
    pixel_east = RectBivariateSpline(r, c, east)(rows, cols)
    pixel_north = RectBivariateSpline(r, c, north)(rows, cols)
    corners = ground.corners(float(np.hypot(east, north).max()))
    lat, lon = ground.latlon(corners[:, 0], corners[:, 1])
    ecf = geocoords.geodetic_to_ecf(np.column_stack([lat, lon, np.full(len(lat), spec.hae)]))
    corner_px = ground_to_image(ecf, sicd)[0] if len(ecf) else np.zeros((0, 2))
    rng = np.random.default_rng([spec.seed, 2])
    sf = spec.sigma0_sf or 0.1
    return landscape_clutter(ground, pixel_east, pixel_north, corner_px, weight, sf, rng)


def check_spec(spec: SimulationSpec, sicd: Any) -> None:
    """Refuse a skew whose support centre leaves the native band (it would be meaningless).

    A support that wraps across the Nyquist edge is fine: the samples still hold it whole.
    """
    rr = (np.array([0, spec.rows - 1]) - sicd.ImageData.SCPPixel.Row) * sicd.Grid.Row.SS
    cc = (np.array([0, spec.cols - 1]) - sicd.ImageData.SCPPixel.Col) * sicd.Grid.Col.SS
    for name, d in (("row", sicd.Grid.Row), ("col", sicd.Grid.Col)):
        worst = np.abs(polynomial.polygrid2d(rr, cc, d.DeltaKCOAPoly.get_array())).max()
        if worst >= 0.5 / d.SS:
            raise ValueError(
                f"{name} skew up to {worst:.3g} cycles/m is past the native "
                f"Nyquist frequency {0.5 / d.SS:.3g}"
            )
    if spec.ground not in ("", "landscape"):
        raise ValueError(f"ground {spec.ground!r}: not 'uniform' or 'landscape'")
    if spec.ground and spec.relief_m:
        raise ValueError("a landscape is simulated on flat ground: relief_m must be 0")
    if spec.relief_m:
        from sarlo_dask.sim.terrain import check_terrain

        check_terrain(spec)


def simulate_scene(path: str | Path, spec: SimulationSpec | None = None) -> dict[str, Any]:
    """Write a SICD NITF at `path` (with sarkit), its ground truth at `path` + '.truth.json'
    and, with terrain (spec.relief_m > 0), its DEM at `path` + '.dem.tif'."""
    from sarlo_dask.io.nitf import write_sicd_nitf

    spec = spec or SimulationSpec()
    sicd = fit_collect_duration(spec)
    check_spec(spec, sicd)
    image, targets = synthesize(spec, sicd)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    xml = sicd.to_xml_string(tag="SICD", check_validity=False)
    write_sicd_nitf(path, xml, image, spec.collector)
    truth = {
        "spec": spec_record(spec),
        "scp_ecf": sicd.GeoData.SCP.ECF.get_array().tolist(),
        "targets": [asdict(t) for t in targets],
    }
    Path(str(path) + ".dem.tif").unlink(missing_ok=True)
    if spec.relief_m:
        from sarlo_dask.sim.terrain import terrain_truth

        truth = terrain_truth(path, spec, sicd, truth)
    Path(str(path) + ".truth.json").write_text(json.dumps(truth, indent=1))
    return truth
