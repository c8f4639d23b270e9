"""A synthetic landscape that both the simulated SAR and its optical tiles are made from, so that
the demo's amplitude preview and optical view show the same fields, roads, river, trees and
buildings: the dataset's point, a SAR tile and an optical image of one place.

Pure functions of ground positions (east, north metres from the scene centre): a rotated grid
of parcels (crops with furrows, bare soil, woods, a building in its yard), roads every few
parcels, a winding river lined with trees. Each class has a SAR backscatter (sigma0) and an
optical colour; a building's corners are bright point scatterers in SAR (walls and ground
make corner reflectors)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

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


class _Frame(NamedTuple):
    """Ground points in the parcel grid: rotated (u, v), parcel indices, offsets in it."""

    u: Any
    v: Any
    iu: Any
    iv: Any
    du: Any
    dv: Any


def _where(mask: Any, layer: Callable[[_Frame], Any], f: _Frame, fill: float) -> Any:
    """np.where(mask, layer(f), fill), with `layer` drawn only where `mask` holds."""
    out = np.full(np.shape(mask), fill)
    if np.any(mask):
        out[mask] = layer(_Frame(*(np.asarray(a)[mask] for a in f)))
    return out


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
        angle = self.angle
        c, s = np.cos(angle), np.sin(angle)
        return c * east + s * north, -s * east + c * north

    def _river(self, u: Any) -> Any:
        phase, offset = self._rng().random(2)
        return 90 * np.sin(2 * np.pi * u / 700 + 2 * np.pi * phase) + 500 * (offset - 0.5)

    def _frame(self, east: Any, north: Any) -> _Frame:
        """The grid coordinates of ground points, computed once for every layer drawn."""
        u, v = self._uv(np.asarray(east, "float64"), np.asarray(north, "float64"))
        iu, iv = np.floor(u / PARCEL_M).astype(np.int64), np.floor(v / PARCEL_M).astype(np.int64)
        return _Frame(u, v, iu, iv, u - (iu + 0.5) * PARCEL_M, v - (iv + 0.5) * PARCEL_M)

    def _parcel_hash(self, f: _Frame, salt: int) -> Any:
        """_hash(iu, iv, seed + salt) of each point, drawn once per parcel (a few hundred
        parcels, millions of points) and looked up: the same numbers."""
        seed = np.int64(self.seed + salt)
        if f.iu.size == 0:
            return _hash(f.iu, f.iv, seed)
        u0, v0 = f.iu.min(), f.iv.min()
        table = _hash(
            np.arange(u0, f.iu.max() + 1)[:, None], np.arange(v0, f.iv.max() + 1)[None, :], seed
        )
        return table[f.iu - u0, f.iv - v0]

    def parcels(self, east: Any, north: Any) -> tuple[Any, Any, Any, Any]:
        """(parcel u index, v index, u, v in the parcel from its centre) of ground points."""
        f = self._frame(east, north)
        return f.iu, f.iv, f.du, f.dv

    def classes(self, east: Any, north: Any) -> tuple[Any, Any]:
        """(class, crop) of ground points: class codes above, crop 0-3 for fields."""
        return self._classes(self._frame(east, north))

    def _classes(self, f: _Frame) -> tuple[Any, Any]:
        pick = self._parcel_hash(f, 0)
        crop = (self._parcel_hash(f, 1) * len(CROP_SIGMA0)).astype(np.int64)
        cls = np.where(pick < 0.62, FIELD, np.where(pick < 0.72, BARE, TREE)).astype(np.int8)
        half = 0.2 * PARCEL_M + 0.12 * PARCEL_M * self._parcel_hash(f, 2)
        built = pick >= 0.86
        cls[built] = YARD
        cls[built & (np.abs(f.du) < half) & (np.abs(f.dv) < half)] = ROOF
        period = PARCEL_M * ROAD_EVERY
        for w in (f.u, f.v):
            cls[np.abs((w + period / 2) % period - period / 2) < ROAD_HALF_M] = ROAD
        off = np.abs(f.v - self._river(f.u))
        cls[(off >= RIVER_HALF_M) & (off < RIVER_HALF_M + BANK_M)] = TREE
        cls[off < RIVER_HALF_M] = WATER
        return cls, crop

    def furrows(self, east: Any, north: Any) -> Any:
        """A field's rows (-1 to 1): stripes 6 m apart, each parcel its own way."""
        return self._furrows(self._frame(east, north))

    def _furrows(self, f: _Frame) -> Any:
        turn = self._parcel_hash(f, 3) > 0.5
        return np.sin(2 * np.pi * np.where(turn, f.du, f.dv) / 6.0)

    def canopy(self, east: Any, north: Any) -> Any:
        """Tree crowns (0 to 1): blobs about 8 m across."""
        return self._canopy(self._frame(east, north))

    @staticmethod
    def _canopy(f: _Frame) -> Any:
        return 0.5 + 0.25 * (np.sin(f.u / 1.3) * np.sin(f.v / 1.1) + np.sin((f.u + f.v) / 2.1))

    def sigma0(self, east: Any, north: Any) -> Any:
        """The backscatter (linear sigma0) of ground points: by class, fields textured by their
        furrows, woods by their crowns."""
        f = self._frame(east, north)
        cls, crop = self._classes(f)
        s = np.where(cls == FIELD, CROP_SIGMA0[crop], SIGMA0[cls])
        s = s * _where(cls == FIELD, lambda g: 1 + 0.35 * self._furrows(g), f, 1.0)
        return s * _where(cls == TREE, lambda g: 0.5 + self._canopy(g), f, 1.0)

    def rgb(self, east: Any, north: Any) -> Any:
        """The colour (float RGB, ... x 3) of ground points seen from above."""
        f = self._frame(east, north)
        cls, crop = self._classes(f)
        out = np.where((cls == FIELD)[..., None], CROP_RGB[crop], RGB[cls])
        shade = _where(cls == FIELD, lambda g: 12 * self._furrows(g), f, 0.0)
        shade = shade + _where(cls == TREE, lambda g: 40 * (self._canopy(g) - 0.5), f, 0.0)
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
