"""Documented transformations of a real SICD geometry into the shape of another product.

`sarlo simulate --like XML --variant NAME` applies one before simulating, so that tests and
users meet geometries the shared corpus lacks, each derived from a real one by a stated rule:

- `backprojected`: Capella's open-data labelling of an RMA/INCA product. ImageFormAlgo OTHER,
  RMAlgoType RG_DOP and a Processing step "Backprojected to DEM" (what sarpy's Capella reader
  writes), the RGZERO grid and the INCA block kept. Every number of the geometry is the
  input's, so its projection is the input's.
- `left`: a left-looking collection. The orbit is mirrored through the plane holding the
  Earth's centre, the SCP and the platform at the SCP's centre of aperture (COA): positions
  at the COA are unchanged and the velocity is mirrored across that plane, so the radar sees
  the same ground from the other side of its track (the mirrored orbit stays an orbit about
  the Earth's centre).
- `squint`: a strongly squinted collection (DopplerConeAng 76 deg, 14 deg forward). The
  orbit is rotated about the axis through the Earth's centre and the platform at the COA
  (again a rigid motion about the Earth's centre) by the angle that puts the velocity at
  76 deg from the line of sight to the SCP.

An RMA/INCA product (TerraSAR-X's) made `left` keeps its zero-Doppler grid: the grid's
unit vectors are mirrored with the orbit and its column direction reversed (the image
plane's normal still away from the Earth), so TimeCA and TimeCOA fall with the column, and
every polynomial of column metres (TimeCOA, TimeCA, DRateSF, Doppler centroid, DeltaKCOA,
radiometry) is taken at -y. `squint`, and `left` on a PFA product (Umbra's): what follows
from the orbit (SCPCOA, the grid's unit vectors, the PFA block: focus and image planes,
polar angle and spatial-frequency polynomials, Kaz/Krg bounds) is derived again by sarpy
from the new orbit, the SCP, the timeline and the grid's spacings, weighting and
bandwidths, which stay the input's. A mirror through a plane that does not hold the
Earth's axis is not a symmetry of the ellipsoid: the mirrored product images ground
metres to tens of metres from the mirror of the input's (at 5-25 km from the SCP), a
geometry of its own that the tests judge as such.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.polynomial import polynomial as npp

from sarlo_dask.geometry.sicd import quiet, sicd_from_xml


def backprojected(sicd: Any) -> Any:
    """Capella's labelling of an RMA/INCA product (see the module's docstring)."""
    from sarpy.io.complex.sicd_elements.ImageFormation import ProcessingType

    if sicd.RMA is None or sicd.RMA.INCA is None or sicd.Grid.Type != "RGZERO":
        raise ValueError("the backprojected variant needs an RMA/INCA product on an RGZERO grid")
    form = sicd.ImageFormation
    form.ImageFormAlgo = "OTHER"
    form.Processings = [ProcessingType(Type="Backprojected to DEM", Applied=True)]
    form.STBeamComp = "NO"
    sicd.RMA.RMAlgoType = "RG_DOP"
    return sicd


SQUINT_DOPPLER_CONE_DEG = 76.0


def _arp_coefs(sicd: Any) -> np.ndarray:
    """Position.ARPPoly's coefficients, (3, order + 1)."""
    arp = sicd.Position.ARPPoly
    parts = [p.get_array(dtype="float64") for p in (arp.X, arp.Y, arp.Z)]
    out = np.zeros((3, max(len(c) for c in parts)))
    for i, c in enumerate(parts):
        out[i, : len(c)] = c
    return out


def _moved_orbit(sicd: Any, matrix: np.ndarray) -> Any:
    """The product with its orbit mapped by `matrix` (3 x 3, about the Earth's centre) and
    what follows from the orbit derived again (see the module's docstring)."""
    if str(sicd.ImageFormation.ImageFormAlgo) != "PFA" or sicd.Grid.Type != "RGAZIM":
        raise ValueError("the left and squint variants move PFA products (RGAZIM grids)")
    _map_orbit(sicd, matrix)
    sicd.Grid.Row.UVectECF = None
    sicd.Grid.Col.UVectECF = None
    sicd.PFA = None
    return _derived(sicd)


def _map_orbit(sicd: Any, matrix: np.ndarray) -> None:
    """Position.ARPPoly mapped by `matrix`; SCPCOA cleared, to be derived from it again."""
    from sarpy.io.complex.sicd_elements.blocks import XYZPolyType

    coefs = matrix @ _arp_coefs(sicd)
    sicd.Position.ARPPoly = XYZPolyType(X=coefs[0], Y=coefs[1], Z=coefs[2])
    sicd.SCPCOA = None


def _derived(sicd: Any) -> Any:
    """`sicd` with what sarpy derives from its orbit filled again, corners and the geographic
    ValidData recomputed."""
    with quiet():
        sicd.derive()
        sicd.define_geo_image_corners(override=True)
        if sicd.ImageData.ValidData is not None:
            sicd.GeoData.ValidData = None
            sicd.define_geo_valid_data()
    return sicd


def _coa(sicd: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The platform's position and velocity at the SCP's COA, and the SCP (ECF)."""
    coefs = _arp_coefs(sicd).T
    t = float(sicd.SCPCOA.SCPTime)
    pos = np.asarray(npp.polyval(t, coefs))
    vel = np.asarray(npp.polyval(t, npp.polyder(coefs)))
    return pos, vel, sicd.GeoData.SCP.ECF.get_array(dtype="float64")


def _rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    a = axis / np.linalg.norm(axis)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * (k @ k)


def left(sicd: Any) -> Any:
    """A left-looking collection from a right-looking one (see the module's docstring)."""
    pos, _, scp = _coa(sicd)
    normal = np.cross(pos, scp)
    normal /= np.linalg.norm(normal)
    mirror = np.eye(3) - 2 * np.outer(normal, normal)
    if sicd.Grid.Type == "RGZERO" and sicd.RMA is not None and sicd.RMA.INCA is not None:
        return _mirrored_inca(sicd, mirror)
    return _moved_orbit(sicd, mirror)


def _flipped(poly: Any, sign: float = 1.0) -> Any:
    """A SICD polynomial of (row, col) metres, or of col metres alone, in the mirrored
    column direction (y -> -y: odd column powers change sign), times `sign`."""
    from sarpy.io.complex.sicd_elements.blocks import Poly1DType, Poly2DType

    if poly is None:
        return None
    c = poly.get_array(dtype="float64")
    if c.ndim == 1:
        return Poly1DType(Coefs=sign * c * (-1.0) ** np.arange(c.size))
    return Poly2DType(Coefs=sign * c * (-1.0) ** np.arange(c.shape[1])[None, :])


def _mirrored_inca(sicd: Any, mirror: np.ndarray) -> Any:
    """An RMA/INCA product seen from the mirrored orbit. The grid's unit vectors are
    mirrored and its column direction reversed, so that the image plane's normal still
    points away from the Earth: column c of the new frame is column (frame - 1 - c) of the
    old, and every polynomial of column metres is taken at -y (TimeCA and TimeCOA now fall
    with the column); the column's spatial frequencies change sign."""
    from sarlo_dask.geometry.chip import sicd_vertex_order

    grid, img, inca = sicd.Grid, sicd.ImageData, sicd.RMA.INCA
    _map_orbit(sicd, mirror)
    grid.Row.UVectECF = mirror @ grid.Row.UVectECF.get_array(dtype="float64")
    grid.Col.UVectECF = -(mirror @ grid.Col.UVectECF.get_array(dtype="float64"))
    grid.TimeCOAPoly = _flipped(grid.TimeCOAPoly)
    grid.Row.DeltaKCOAPoly = _flipped(grid.Row.DeltaKCOAPoly)
    col = grid.Col
    col.DeltaKCOAPoly = _flipped(col.DeltaKCOAPoly, -1.0)
    col.KCtr = -col.KCtr
    if col.DeltaK1 is not None and col.DeltaK2 is not None:
        col.DeltaK1, col.DeltaK2 = -col.DeltaK2, -col.DeltaK1
    if col.WgtFunct is not None:
        col.WgtFunct = np.asarray(col.WgtFunct)[::-1]
    inca.TimeCAPoly = _flipped(inca.TimeCAPoly)
    inca.DRateSFPoly = _flipped(inca.DRateSFPoly)
    inca.DopCentroidPoly = _flipped(inca.DopCentroidPoly)
    rad = sicd.Radiometric
    if rad is not None:
        for name in ("RCSSFPoly", "SigmaZeroSFPoly", "BetaZeroSFPoly", "GammaZeroSFPoly"):
            setattr(rad, name, _flipped(getattr(rad, name)))
        if rad.NoiseLevel is not None:
            rad.NoiseLevel.NoisePoly = _flipped(rad.NoiseLevel.NoisePoly)
    frame = int(img.FullImage.NumCols) if img.FullImage is not None else int(img.NumCols)
    img.SCPPixel = (img.SCPPixel.Row, frame - 1 - img.SCPPixel.Col)
    img.FirstCol = frame - int(img.FirstCol) - int(img.NumCols)
    if img.ValidData is not None:
        v = img.ValidData.get_array(dtype="float64")[::-1]
        v[:, 1] = frame - 1 - v[:, 1]
        img.ValidData = [tuple(p) for p in sicd_vertex_order(v).tolist()]
    return _derived(sicd)


def squint(sicd: Any) -> Any:
    """A collection squinted to SQUINT_DOPPLER_CONE_DEG (see the module's docstring)."""
    pos, vel, scp = _coa(sicd)
    los = (scp - pos) / np.linalg.norm(scp - pos)
    want = SQUINT_DOPPLER_CONE_DEG

    def off(angle: float) -> float:  # the cone angle after a rotation, minus the one wanted
        v = _rotation(pos, angle) @ vel
        return float(np.degrees(np.arccos(np.dot(v, los) / np.linalg.norm(v)))) - want

    lo, hi = -np.pi / 2, np.pi / 2  # the cone angle is monotonic over a quarter turn each way
    if off(lo) * off(hi) > 0:
        raise ValueError(f"no rotation of this orbit sees its SCP at {want} deg")
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if off(lo) * off(mid) <= 0 else (mid, hi)
    return _moved_orbit(sicd, _rotation(pos, (lo + hi) / 2))


VARIANTS: dict[str, Callable[[Any], Any]] = {
    "backprojected": backprojected,
    "left": left,
    "squint": squint,
}
"""name -> a function editing a SICD structure (sarpy) in place and returning it"""


def apply_variant(xml: str, name: str) -> str:
    """The SICD `xml` transformed by the variant `name` (a ValueError names the known ones)."""
    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r} (known: {', '.join(sorted(VARIANTS))})")
    sicd = VARIANTS[name](sicd_from_xml(xml))
    with quiet():
        return str(sicd.to_xml_string(tag="SICD", check_validity=False))
