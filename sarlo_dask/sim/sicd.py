"""The SICD metadata of a simulated scene: a valid, projectable spotlight PFA product (sarpy
builds the model: sarkit 1.8 has none), right-looking, flying north over the spec's SCP."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from sarlo_dask.geometry.sicd import SPEED_OF_LIGHT

if TYPE_CHECKING:
    from sarlo_dask.sim.spec import SimulationSpec


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


def fit_collect_duration(spec: SimulationSpec) -> Any:
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


def noise_power(spec: SimulationSpec) -> float:
    """Mean receiver-noise power per pixel, |z|^2 units (0: none): NESZ over the sigma0 scale."""
    if spec.sigma0_sf is None or spec.nesz_db is None:
        return 0.0
    return float(10 ** (spec.nesz_db / 10) / spec.sigma0_sf)
