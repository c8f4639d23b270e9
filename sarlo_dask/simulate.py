"""Synthetic spotlight PFA SICD scenes with ground truth: the demo's input and the tests' oracle.

Band-limited speckle (declared sigma0 and receiver noise) plus point targets, made in the
spatial-frequency domain with the aperture weighting, optionally skewed by a DeltaKCOAPoly,
written by sarkit (sarpy builds the metadata model: sarkit 1.8 has none). The truth file
beside the NITF holds the targets' pixels, ECEF and lat/lon/hae: on flat ground at `hae`, or
with `relief_m` on a terrain whose DEM is written beside it (simulate_terrain)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from numpy.polynomial import polynomial

from sarlo_dask.sicd import SPEED_OF_LIGHT, spectral_weight

DEFAULT_COLLECT_START = "2025-06-01T10:00:00.000000"


@dataclass(frozen=True)
class SimulationSpec:
    """What to simulate. Spacings in metres; skews are DeltaKCOAPoly coefficients (cycles/m)."""

    rows: int = 1024
    """range samples (SICD rows)"""
    cols: int = 1024
    """azimuth samples (SICD columns)"""
    row_spacing: float = 0.3
    col_spacing: float = 0.3
    oversampling: float = 1.25
    """SS * ImpRespBW = 1 / oversampling, in both directions"""
    weighting: str = "TAYLOR"
    """UNIFORM, TAYLOR (nbar 5, -35 dB) or HAMMING"""
    col_deltakcoa: tuple[tuple[float, ...], ...] = ((0.0,),)
    """Grid.Col.DeltaKCOAPoly, indexed [row power][col power], metres from the SCP"""
    row_deltakcoa: tuple[tuple[float, ...], ...] = ((0.0,),)
    n_targets: int = 9
    target_db: float = 45.0
    """target peak above the clutter RMS, dB"""
    seed: int = 0
    lat: float = 48.7128
    lon: float = 2.2075
    hae: float = 150.0
    incidence_deg: float = 35.0
    altitude: float = 525e3
    center_frequency: float = 9.6e9
    collector: str = "SIMSAT-1"
    collect_start: str = DEFAULT_COLLECT_START
    polarization: str = "V:V"
    core_name: str = field(default="")
    sigma0_sf: float | None = 0.1
    """SigmaZeroSFPoly constant (sigma0 = sf * |pixel|^2). The clutter has unit mean power, so
    the default declares it at sigma0 -10 dB (a field's backscatter at X band); None writes no
    Radiometric block, as Umbra's and TerraSAR-X's products have none"""
    nesz_db: float | None = -25.0
    """receiver noise, as sigma0 (dB): added with the clutter's spectral shape and declared in
    Radiometric.NoiseLevel; None (or no sigma0_sf): a noise-free scene"""
    relief_m: float = 0.0
    """terrain relief over the footprint (m; 0: flat at `hae`), its shape's seed, its DEM's
    spacing (m), and whether slopes facing the sensor may lay over (simulate_terrain)"""
    terrain_seed: int = 0
    dem_spacing_m: float = 2.0
    allow_layover: bool = False

    def skewed(self) -> bool:
        return bool(
            np.any(np.asarray(self.col_deltakcoa)) or np.any(np.asarray(self.row_deltakcoa))
        )


@dataclass(frozen=True)
class Target:
    row: float
    col: float
    ecf: tuple[float, float, float]
    llh: tuple[float, float, float]
    amplitude: float


def _enu_basis(lat_deg: float, lon_deg: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lat, lon = np.deg2rad(lat_deg), np.deg2rad(lon_deg)
    east = np.array([-np.sin(lon), np.cos(lon), 0.0])
    north = np.array([-np.sin(lat) * np.cos(lon), -np.sin(lat) * np.sin(lon), np.cos(lat)])
    up = np.array([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)])
    return east, north, up


def _wgt_type(name: str) -> Any:
    from sarpy.io.complex.sicd_elements.Grid import WgtTypeType

    name = name.upper()
    if name == "TAYLOR":
        return WgtTypeType(WindowName="TAYLOR", Parameters={"NBAR": "5", "SLL": "-35"})
    if name == "HAMMING":
        return WgtTypeType(WindowName="HAMMING", Parameters={"COEFFICIENT": "0.54"})
    if name == "UNIFORM":
        return WgtTypeType(WindowName="UNIFORM")
    raise ValueError(f"unsupported weighting {name!r}: use UNIFORM, TAYLOR or HAMMING")


def build_sicd(spec: SimulationSpec, collect_duration: float | None = None) -> Any:
    """A valid, projectable spotlight PFA SICD structure for `spec` (no pixels)."""
    from sarpy.geometry import geocoords
    from sarpy.io.complex.sicd_elements import (
        CollectionInfo,
        GeoData,
        Grid,
        ImageData,
        ImageFormation,
        Position,
        RadarCollection,
        Timeline,
    )
    from sarpy.io.complex.sicd_elements.blocks import Poly2DType, XYZPolyType
    from sarpy.io.complex.sicd_elements.SICD import SICDType

    scp = geocoords.geodetic_to_ecf([spec.lat, spec.lon, spec.hae])
    east, north, up = _enu_basis(spec.lat, spec.lon)
    ground_range = spec.altitude * np.tan(np.deg2rad(spec.incidence_deg))
    arp0 = scp - ground_range * east + spec.altitude * up  # right-looking, flying north
    speed = 7600.0
    vel = speed * north
    slant_range = float(np.linalg.norm(arp0 - scp))

    row_bw = 1.0 / (spec.row_spacing * spec.oversampling)
    col_bw = 1.0 / (spec.col_spacing * spec.oversampling)
    krg_ctr = 2.0 * spec.center_frequency / SPEED_OF_LIGHT
    tx_bw = row_bw * SPEED_OF_LIGHT / 2.0
    if collect_duration is None:
        half_angle = np.arctan(0.5 * col_bw / (krg_ctr - 0.5 * row_bw))
        collect_duration = 2.0 * half_angle * slant_range / speed
    t_coa = 0.5 * collect_duration

    arp_coefs = np.vstack([arp0 - vel * t_coa, vel])
    f_min, f_max = spec.center_frequency - tx_bw / 2, spec.center_frequency + tx_bw / 2
    tx_pol, _ = spec.polarization.split(":")
    start = np.datetime64(spec.collect_start, "us")
    prf = 5000.0

    def direction(ss: float, bw: float, kctr: float, poly: Any) -> Any:
        d = Grid.DirParamType(
            SS=ss,
            ImpRespBW=bw,
            Sgn=-1,
            KCtr=kctr,
            DeltaKCOAPoly=Poly2DType(Coefs=np.atleast_2d(np.asarray(poly, dtype="float64"))),
            WgtType=_wgt_type(spec.weighting),
        )
        d.define_weight_function(populate=True)
        d.define_response_widths(populate=True)
        return d

    rows, cols = spec.rows, spec.cols
    sicd = SICDType(
        CollectionInfo=CollectionInfo.CollectionInfoType(
            CollectorName=spec.collector,
            CoreName=spec.core_name or f"{spec.collector}_{spec.collect_start[:10]}_SIM{spec.seed}",
            CollectType="MONOSTATIC",
            RadarMode=CollectionInfo.RadarModeType(ModeType="SPOTLIGHT"),
            Classification="UNCLASSIFIED",
        ),
        ImageData=ImageData.ImageDataType(
            PixelType="RE32F_IM32F",
            NumRows=rows,
            NumCols=cols,
            FirstRow=0,
            FirstCol=0,
            FullImage=(rows, cols),
            SCPPixel=(rows // 2, cols // 2),
            ValidData=[(0, 0), (0, cols - 1), (rows - 1, cols - 1), (rows - 1, 0)],
        ),
        GeoData=GeoData.GeoDataType(SCP=GeoData.SCPType(LLH=[spec.lat, spec.lon, spec.hae])),
        Grid=Grid.GridType(
            ImagePlane="SLANT",
            Type="RGAZIM",
            TimeCOAPoly=Poly2DType(Coefs=[[t_coa]]),
            Row=direction(spec.row_spacing, row_bw, krg_ctr, spec.row_deltakcoa),
            Col=direction(spec.col_spacing, col_bw, 0.0, spec.col_deltakcoa),
        ),
        Timeline=Timeline.TimelineType(
            CollectStart=start,
            CollectDuration=collect_duration,
            IPP=[
                Timeline.IPPSetType(
                    TStart=0.0,
                    TEnd=collect_duration,
                    IPPStart=0,
                    IPPEnd=int(round(collect_duration * prf)) - 1,
                    IPPPoly=[0.0, prf],
                    index=1,
                )
            ],
        ),
        Position=Position.PositionType(
            ARPPoly=XYZPolyType(X=arp_coefs[:, 0], Y=arp_coefs[:, 1], Z=arp_coefs[:, 2])
        ),
        RadarCollection=RadarCollection.RadarCollectionType(
            TxFrequency=(f_min, f_max),
            Waveform=[
                RadarCollection.WaveformParametersType(
                    TxPulseLength=20e-6,
                    TxRFBandwidth=tx_bw,
                    TxFreqStart=f_min,
                    TxFMRate=tx_bw / 20e-6,
                    RcvDemodType="CHIRP",
                    ADCSampleRate=1.25 * tx_bw,
                    RcvWindowLength=40e-6,
                    RcvFMRate=0.0,
                    index=1,
                )
            ],
            TxPolarization=tx_pol,
            RcvChannels=[
                RadarCollection.ChanParametersType(TxRcvPolarization=spec.polarization, index=1)
            ],
        ),
        ImageFormation=ImageFormation.ImageFormationType(
            RcvChanProc=ImageFormation.RcvChanProcType(
                NumChanProc=1, PRFScaleFactor=1, ChanIndices=[1]
            ),
            TxRcvPolarizationProc=spec.polarization,
            TStartProc=0.0,
            TEndProc=collect_duration,
            TxFrequencyProc=(f_min, f_max),
            ImageFormAlgo="PFA",
            STBeamComp="NO",
            ImageBeamComp="NO",
            AzAutofocus="NO",
            RgAutofocus="NO",
        ),
    )
    if spec.sigma0_sf is not None:
        from sarpy.io.complex.sicd_elements.Radiometric import NoiseLevelType_, RadiometricType

        sicd.Radiometric = RadiometricType(SigmaZeroSFPoly=Poly2DType(Coefs=[[spec.sigma0_sf]]))
        noise = noise_power(spec)
        if noise:
            sicd.Radiometric.NoiseLevel = NoiseLevelType_(
                NoiseLevelType="ABSOLUTE", NoisePoly=Poly2DType(Coefs=[[10 * np.log10(noise)]])
            )
    sicd.derive()
    sicd.Grid.Row.KCtr = krg_ctr  # derive() computes it wrongly for PFA
    sicd.define_geo_image_corners(override=True)
    sicd.define_geo_valid_data()
    _fill_area(sicd)
    return sicd


def _fill_area(sicd: Any) -> None:
    from sarpy.io.complex.sicd_elements.RadarCollection import AreaType

    corners = sicd.GeoData.ImageCorners.get_array(dtype="float64")
    sicd.RadarCollection.Area = AreaType(
        Corner=[[lat, lon, sicd.GeoData.SCP.LLH.HAE] for lat, lon in corners]
    )


def _fit_collect_duration(spec: SimulationSpec) -> Any:
    """Build the SICD, then stretch the collect so the PFA polar angle matches the azimuth band."""
    sicd = build_sicd(spec)
    for _ in range(3):
        pfa = sicd.PFA
        k_a, _ = pfa.pfa_polar_coords(
            sicd.Position,
            sicd.GeoData.SCP.ECF.get_array(),
            np.array([0.0, sicd.Timeline.CollectDuration]),
        )
        have = abs(float(k_a[1] - k_a[0]))
        want = 2 * np.arctan(0.5 * (pfa.Kaz2 - pfa.Kaz1) / pfa.Krg1)
        if abs(have - want) < 1e-6:
            break
        sicd = build_sicd(spec, sicd.Timeline.CollectDuration * want / have)
    return sicd


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


def noise_power(spec: SimulationSpec) -> float:
    """Mean receiver-noise power per pixel, |z|^2 units (0: none): NESZ over the sigma0 scale."""
    if spec.sigma0_sf is None or spec.nesz_db is None:
        return 0.0
    return float(10 ** (spec.nesz_db / 10) / spec.sigma0_sf)


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
    if spec.relief_m:
        from sarlo_dask.simulate_terrain import check_terrain

        check_terrain(spec)


def spec_record(spec: SimulationSpec) -> dict[str, Any]:
    """The spec as the truth file holds it: a flat scene's without the terrain settings."""
    terrain = ("relief_m", "terrain_seed", "dem_spacing_m", "allow_layover")
    return {k: v for k, v in asdict(spec).items() if spec.relief_m or k not in terrain}


def simulate_scene(path: str | Path, spec: SimulationSpec | None = None) -> dict[str, Any]:
    """Write a SICD NITF at `path` (with sarkit), its ground truth at `path` + '.truth.json'
    and, with terrain (spec.relief_m > 0), its DEM at `path` + '.dem.tif'."""
    from sarlo_dask.nitf import write_sicd_nitf

    spec = spec or SimulationSpec()
    sicd = _fit_collect_duration(spec)
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
        from sarlo_dask.simulate_terrain import terrain_truth

        truth = terrain_truth(path, spec, sicd, truth)
    Path(str(path) + ".truth.json").write_text(json.dumps(truth, indent=1))
    return truth
