"""A synthetic landscape that both the simulated SAR and its optical tiles are made from, so that
the demo's amplitude preview and optical view show the same fields, roads, river, trees and
buildings: the dataset's point, a SAR tile and an optical image of one place.

Pure functions of ground positions (east, north metres from the scene centre): a rotated grid
of parcels (crops with furrows, bare soil, woods, a building in its yard), roads every few
parcels, a winding river lined with trees. Each class has a SAR backscatter (sigma0) and an
optical colour; a building's corners are bright point scatterers in SAR (walls and ground
make corner reflectors)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

WATER, ROAD, FIELD, BARE, TREE, YARD, ROOF = range(7)
SIGMA0 = np.array([0.003, 0.008, 0.0, 0.03, 0.2, 0.02, 0.06])
"""sigma0 (linear) by class; FIELD's comes from its crop (CROP_SIGMA0)"""
CROP_SIGMA0 = np.array([0.04, 0.07, 0.11, 0.16])
RGB = np.array(
    [
        (45, 75, 115),  # water
        (150, 150, 145),  # road
        (0, 0, 0),  # field: CROP_RGB
        (150, 120, 85),  # bare soil
        (38, 78, 40),  # trees
        (125, 125, 112),  # yard
        (176, 98, 78),  # roof (never the markers' pure red)
    ],
    dtype="float64",
)
CROP_RGB = np.array([(96, 132, 60), (132, 150, 72), (172, 162, 92), (110, 112, 56)], "float64")
PARCEL_M = 64.0
ROAD_EVERY = 4
"""a road along every 4th parcel boundary, each way"""
ROAD_HALF_M = 4.0
RIVER_HALF_M = 16.0
BANK_M = 14.0
"""trees along each bank"""
M_PER_DEG = 111_320.0


def _hash(*ints: Any) -> npt.NDArray[np.float64]:
    """A uniform number in [0, 1) per element, from integers (a splitmix64 mix)."""
    h = np.zeros(np.broadcast(*ints).shape, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for v in ints:
            h = (h ^ np.asarray(v).astype(np.uint64)) * np.uint64(0x9E3779B97F4A7C15)
            h ^= h >> np.uint64(31)
            h *= np.uint64(0xBF58476D1CE4E5B9)
            h ^= h >> np.uint64(29)
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)


@dataclass(frozen=True)
class Ground:
    """The landscape around (lat, lon), drawn from `seed`."""

    lat: float
    lon: float
    seed: int = 0

    def _rng(self) -> np.random.Generator:
        return np.random.default_rng([self.seed, 27])

    @property
    def angle(self) -> float:
        """The parcel grid's rotation from east (radians)."""
        return float(np.radians(12 + 25 * self._rng().random()))

    def local(self, lat: Any, lon: Any) -> tuple[Any, Any]:
        """(east, north) metres from the centre (a plane: the demo's scenes span 2 km)."""
        east = (np.asarray(lon) - self.lon) * M_PER_DEG * np.cos(np.radians(self.lat))
        return east, (np.asarray(lat) - self.lat) * M_PER_DEG

    def latlon(self, east: Any, north: Any) -> tuple[Any, Any]:
        lat = self.lat + np.asarray(north) / M_PER_DEG
        return lat, self.lon + np.asarray(east) / (M_PER_DEG * np.cos(np.radians(self.lat)))

    def _uv(self, east: Any, north: Any) -> tuple[Any, Any]:
        c, s = np.cos(self.angle), np.sin(self.angle)
        return c * east + s * north, -s * east + c * north

    def _river(self, u: Any) -> Any:
        phase, offset = self._rng().random(2)
        return 90 * np.sin(2 * np.pi * u / 700 + 2 * np.pi * phase) + 500 * (offset - 0.5)

    def parcels(self, east: Any, north: Any) -> tuple[Any, Any, Any, Any]:
        """(parcel u index, v index, u, v in the parcel from its centre) of ground points."""
        u, v = self._uv(np.asarray(east, "float64"), np.asarray(north, "float64"))
        iu, iv = np.floor(u / PARCEL_M).astype(np.int64), np.floor(v / PARCEL_M).astype(np.int64)
        return iu, iv, u - (iu + 0.5) * PARCEL_M, v - (iv + 0.5) * PARCEL_M

    def classes(self, east: Any, north: Any) -> tuple[Any, Any]:
        """(class, crop) of ground points: class codes above, crop 0-3 for fields."""
        iu, iv, du, dv = self.parcels(east, north)
        pick = _hash(iu, iv, np.int64(self.seed))
        crop = (_hash(iu, iv, np.int64(self.seed + 1)) * len(CROP_SIGMA0)).astype(np.int64)
        cls = np.where(pick < 0.62, FIELD, np.where(pick < 0.72, BARE, TREE)).astype(np.int8)
        half = 0.2 * PARCEL_M + 0.12 * PARCEL_M * _hash(iu, iv, np.int64(self.seed + 2))
        built = pick >= 0.86
        cls[built] = YARD
        cls[built & (np.abs(du) < half) & (np.abs(dv) < half)] = ROOF
        u, v = self._uv(np.asarray(east, "float64"), np.asarray(north, "float64"))
        period = PARCEL_M * ROAD_EVERY
        for w in (u, v):
            cls[np.abs((w + period / 2) % period - period / 2) < ROAD_HALF_M] = ROAD
        off = np.abs(v - self._river(u))
        cls[(off >= RIVER_HALF_M) & (off < RIVER_HALF_M + BANK_M)] = TREE
        cls[off < RIVER_HALF_M] = WATER
        return cls, crop

    def furrows(self, east: Any, north: Any) -> Any:
        """A field's rows (-1 to 1): stripes 6 m apart, each parcel its own way."""
        iu, iv, du, dv = self.parcels(east, north)
        turn = _hash(iu, iv, np.int64(self.seed + 3)) > 0.5
        return np.sin(2 * np.pi * np.where(turn, du, dv) / 6.0)

    def canopy(self, east: Any, north: Any) -> Any:
        """Tree crowns (0 to 1): blobs about 8 m across."""
        u, v = self._uv(np.asarray(east, "float64"), np.asarray(north, "float64"))
        return 0.5 + 0.25 * (np.sin(u / 1.3) * np.sin(v / 1.1) + np.sin((u + v) / 2.1))

    def sigma0(self, east: Any, north: Any) -> Any:
        """The backscatter (linear sigma0) of ground points: by class, fields textured by their
        furrows, woods by their crowns."""
        cls, crop = self.classes(east, north)
        s = np.where(cls == FIELD, CROP_SIGMA0[crop], SIGMA0[cls])
        s = s * np.where(cls == FIELD, 1 + 0.35 * self.furrows(east, north), 1.0)
        return s * np.where(cls == TREE, 0.5 + self.canopy(east, north), 1.0)

    def rgb(self, east: Any, north: Any) -> Any:
        """The colour (float RGB, ... x 3) of ground points seen from above."""
        cls, crop = self.classes(east, north)
        out = np.where((cls == FIELD)[..., None], CROP_RGB[crop], RGB[cls])
        shade = np.where(cls == FIELD, 12 * self.furrows(east, north), 0.0)
        shade = shade + np.where(cls == TREE, 40 * (self.canopy(east, north) - 0.5), 0.0)
        return np.clip(out + shade[..., None], 0, 255)

    def corners(self, extent_m: float) -> npt.NDArray[np.float64]:
        """(east, north) of the corners of the buildings within `extent_m` of the centre."""
        n = int(np.ceil(extent_m * 1.5 / PARCEL_M))
        iu, iv = (a.ravel() for a in np.meshgrid(np.arange(-n, n), np.arange(-n, n)))
        c, s = np.cos(self.angle), np.sin(self.angle)
        cu, cv = (iu + 0.5) * PARCEL_M, (iv + 0.5) * PARCEL_M
        east, north = c * cu - s * cv, s * cu + c * cv
        cls, _ = self.classes(east, north)
        keep = cls == ROOF  # the parcel's centre is on its roof: a building's parcel
        half = (0.2 * PARCEL_M + 0.12 * PARCEL_M * _hash(iu, iv, np.int64(self.seed + 2)))[keep]
        out = []
        for su, sv in ((-1, -1), (-1, 1), (1, -1), (1, 1)):
            u, v = cu[keep] + su * (half - 0.5), cv[keep] + sv * (half - 0.5)
            out.append(np.column_stack([c * u - s * v, s * u + c * v]))
        pts = np.concatenate(out) if out else np.zeros((0, 2))
        return pts[np.hypot(pts[:, 0], pts[:, 1]) <= extent_m]


def landscape_clutter(
    ground: Ground,
    east: npt.NDArray[np.float64],
    north: npt.NDArray[np.float64],
    corners: npt.NDArray[np.float64],
    weight: npt.NDArray[np.float64],
    sigma0_sf: float,
    rng: np.random.Generator,
    corner_db: float = 30.0,
) -> npt.NDArray[np.complex128]:
    """The clutter of an image whose pixels lie at (east, north): speckle of the landscape's
    sigma0 (as |pixel|^2 * sigma0_sf), bright points at `corners` ((row, col) pixels), band-
    limited by the spectral `weight` (DFT order)."""
    shape = east.shape
    power = ground.sigma0(east, north) / sigma0_sf
    white = rng.standard_normal((2, *shape))
    rho = np.sqrt(power / 2) * (white[0] + 1j * white[1])
    gain = np.sqrt(np.mean(weight**2))
    amp = 10 ** (corner_db / 20) * gain / np.mean(weight)  # peaks corner_db over unit clutter
    idx = np.round(corners).astype(np.int64)
    inside = np.all((idx >= 0) & (idx < np.array(shape)), axis=1)
    phases = np.exp(2j * np.pi * rng.random(int(inside.sum())))
    rho[idx[inside, 0], idx[inside, 1]] += amp * phases
    return np.fft.ifft2(np.fft.fft2(rho) * weight) / gain
