"""The SICD XML of one tile: the scene's SICD as a chip, describing the chip.

What changes from the scene's XML, as SICD Vol. 1 and sarkit's / sarpy's checks expect of a
chip: ImageData NumRows/NumCols (the tile), FirstRow/FirstCol (its offset; SCPPixel stays in
full-image indices), ImageData.ValidData clipped to the tile's window, GeoData.ImageCorners
at the tile's own corner pixels and GeoData.ValidData at the clipped vertices. Everything
else (grid, geometry, radiometry) is the scene's, so chip pixel (a, r) projects as SICD pixel
(row = FirstRow + r, col = FirstCol + a).

The XML is edited with lxml (about a millisecond per tile): parsing it into sarpy's object
model and writing it back costs more than the rest of the tile.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt
from lxml import etree

Vertices = npt.NDArray[np.float64]
"""(N, 2) polygon vertices as SICD (row, col) full-image indices"""


def clip_polygon(vertices: npt.ArrayLike, rows: tuple[int, int], cols: tuple[int, int]) -> Vertices:
    """The part of a polygon inside the rectangle rows[0] <= row <= rows[1], cols[0] <= col
    <= cols[1] (Sutherland-Hodgman; the rectangle is convex), orientation kept."""
    poly = [tuple(v) for v in np.asarray(vertices, dtype="float64")]
    edges = (
        (0, rows[0], 1.0),
        (0, rows[1], -1.0),
        (1, cols[0], 1.0),
        (1, cols[1], -1.0),
    )
    for axis, bound, sign in edges:
        if not poly:
            break

        def inside(p: tuple[float, ...], axis: int = axis, bound: float = bound, s: float = sign):
            return s * (p[axis] - bound) >= 0

        out: list[tuple[float, ...]] = []
        for i, cur in enumerate(poly):
            prev = poly[i - 1]
            if inside(cur):
                if not inside(prev):
                    out.append(_cross(prev, cur, axis, bound))
                out.append(cur)
            elif inside(prev):
                out.append(_cross(prev, cur, axis, bound))
        poly = out
    return np.array(poly, dtype="float64").reshape(-1, 2)


def _cross(
    p: tuple[float, ...], q: tuple[float, ...], axis: int, bound: float
) -> tuple[float, ...]:
    t = (bound - p[axis]) / (q[axis] - p[axis])
    return tuple(p[k] + t * (q[k] - p[k]) for k in range(2))


def sicd_vertex_order(vertices: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Integer vertices without repeats, starting at the minimum row (then column), as SICD
    requires of ValidData; (0, 2) when fewer than three remain."""
    v = np.rint(np.asarray(vertices, dtype="float64")).astype(np.int64).reshape(-1, 2)
    keep = [p for i, p in enumerate(v) if not np.array_equal(p, v[i - 1])] if len(v) else []
    if len(keep) > 1 and np.array_equal(keep[0], keep[-1]):
        keep.pop()
    if len(keep) < 3:
        return np.zeros((0, 2), dtype=np.int64)
    arr = np.array(keep)
    first = int(np.lexsort((arr[:, 1], arr[:, 0]))[0])
    return np.roll(arr, -first, axis=0)


def chip_valid_data(
    scene_valid: npt.ArrayLike | None, rows: tuple[int, int], cols: tuple[int, int]
) -> npt.NDArray[np.int64]:
    """The chip's ValidData: the scene's polygon clipped to the window (inclusive pixel
    bounds), or the window itself where the scene has none."""
    window = np.array(
        [[rows[0], cols[0]], [rows[0], cols[1]], [rows[1], cols[1]], [rows[1], cols[0]]]
    )
    if scene_valid is None:
        return window
    return sicd_vertex_order(clip_polygon(scene_valid, rows, cols))


def _ns(root: etree._Element) -> str:
    return root.tag.split("}", 1)[0] + "}" if root.tag.startswith("{") else ""


def _set(parent: etree._Element, ns: str, name: str, value: object) -> None:
    node = parent.find(f"{ns}{name}")
    if node is None:
        raise ValueError(f"SICD XML without {parent.tag.split('}')[-1]}/{name}")
    node.text = str(value)


def _latlon_list(
    parent: etree._Element, ns: str, tag: str, child: str, latlon: Sequence[Sequence[float]]
) -> etree._Element:
    node = etree.SubElement(parent, f"{ns}{tag}")
    if tag == "ValidData":
        node.set("size", str(len(latlon)))
    names = ("1:FRFC", "2:FRLC", "3:LRLC", "4:LRFC")
    for i, (lat, lon) in enumerate(latlon):
        item = etree.SubElement(node, f"{ns}{child}")
        item.set("index", names[i] if child == "ICP" else str(i + 1))
        etree.SubElement(item, f"{ns}Lat").text = repr(float(lat))
        etree.SubElement(item, f"{ns}Lon").text = repr(float(lon))
    return node


def _replace(parent: etree._Element, old: etree._Element | None, new: etree._Element) -> None:
    parent.remove(new)
    if old is None:
        parent.append(new)
    else:
        old.addprevious(new)
        parent.remove(old)


def chip_sicd_xml(
    scene_xml: str,
    crop: dict[str, Sequence[int]],
    latlon: Callable[[npt.NDArray[np.float64], npt.NDArray[np.float64]], npt.ArrayLike],
) -> str:
    """The scene's SICD XML as the chip `crop` ({"azimuth": [a0, a1], "range": [r0, r1]} in
    the scene's pixels, end exclusive). `latlon(rows, cols)` gives (N, 2) latitude and
    longitude of scene pixels at the SCP height (the store's tie points)."""
    root = etree.fromstring(scene_xml.encode())
    ns = _ns(root)
    img, geo = root.find(f"{ns}ImageData"), root.find(f"{ns}GeoData")
    if img is None or geo is None:
        raise ValueError("SICD XML without ImageData or GeoData")
    first_row = int(img.findtext(f"{ns}FirstRow", "0"))
    first_col = int(img.findtext(f"{ns}FirstCol", "0"))
    (a0, a1), (r0, r1) = crop["azimuth"], crop["range"]
    rows = (first_row + r0, first_row + r1 - 1)
    cols = (first_col + a0, first_col + a1 - 1)
    for name, value in (
        ("NumRows", r1 - r0),
        ("NumCols", a1 - a0),
        ("FirstRow", rows[0]),
        ("FirstCol", cols[0]),
    ):
        _set(img, ns, name, value)

    def scene_latlon(vertices: npt.ArrayLike) -> np.ndarray:
        v = np.asarray(vertices, dtype="float64")
        return np.asarray(latlon(v[:, 0] - first_row, v[:, 1] - first_col), dtype="float64")

    corners = [[rows[0], cols[0]], [rows[0], cols[1]], [rows[1], cols[1]], [rows[1], cols[0]]]
    icp = _latlon_list(geo, ns, "ImageCorners", "ICP", scene_latlon(corners).tolist())
    _replace(geo, geo.find(f"{ns}ImageCorners"), icp)

    old_valid = img.find(f"{ns}ValidData")
    if old_valid is not None:
        scene_valid = [
            (int(v.findtext(f"{ns}Row", "0")), int(v.findtext(f"{ns}Col", "0")))
            for v in old_valid.findall(f"{ns}Vertex")
        ]
        valid = chip_valid_data(scene_valid, rows, cols)
        if len(valid) < 3:
            raise ValueError(f"tile {crop} holds no part of the scene's ValidData")
        node = etree.SubElement(img, f"{ns}ValidData", size=str(len(valid)))
        for i, (r, c) in enumerate(valid.tolist()):
            vertex = etree.SubElement(node, f"{ns}Vertex", index=str(i + 1))
            etree.SubElement(vertex, f"{ns}Row").text = str(r)
            etree.SubElement(vertex, f"{ns}Col").text = str(c)
        _replace(img, old_valid, node)
        old_geo = geo.find(f"{ns}ValidData")
        geo_valid = _latlon_list(geo, ns, "ValidData", "Vertex", scene_latlon(valid).tolist())
        if old_geo is None:  # the schema's order: ImageCorners, then ValidData
            geo.remove(geo_valid)
            icp.addnext(geo_valid)
        else:
            _replace(geo, old_geo, geo_valid)
    return etree.tostring(root, encoding="unicode")
