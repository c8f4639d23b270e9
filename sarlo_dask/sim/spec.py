"""What a simulated scene is made of (`SimulationSpec`) and how its truth file records it:
the data the simulator's modules share (sim.scene, sim.sicd, sim.terrain), so that
they import it downward instead of from each other."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

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
    spacing (m), and whether slopes facing the sensor may lay over (sim.terrain)"""
    terrain_seed: int = 0
    dem_spacing_m: float = 2.0
    allow_layover: bool = False
    ground: str = ""
    """"" : uniform clutter (speckle of one sigma0); "landscape": the clutter of a synthetic
    landscape (sim.ground: fields, roads, a river, trees, buildings with bright corners)
    that the optical tiles of the scene show too"""

    def skewed(self) -> bool:
        return bool(
            np.any(np.asarray(self.col_deltakcoa)) or np.any(np.asarray(self.row_deltakcoa))
        )


def spec_record(spec: SimulationSpec) -> dict[str, Any]:
    """The spec as the truth file holds it: a flat scene's without the terrain settings."""
    terrain = ("relief_m", "terrain_seed", "dem_spacing_m", "allow_layover")
    record = {k: v for k, v in asdict(spec).items() if spec.relief_m or k not in terrain}
    if not spec.ground:
        record.pop("ground")
    return record
