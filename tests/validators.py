"""The field's own SICD validators as test oracles: sarkit's consistency checker (what
`sicdcheck` runs) and sarpy's `is_valid`, each reduced to a set of findings so a test can
say which findings an output adds to its input's."""

from __future__ import annotations

import logging
from typing import Any

from lxml import etree


def sicdcheck_findings(xml: str | bytes) -> set[str]:
    """'check: detail' of every failed check of sarkit's SicdConsistency (sicdcheck)."""
    from sarkit.verification import SicdConsistency

    data = xml.encode() if isinstance(xml, str) else xml
    con = SicdConsistency.from_parts(etree.fromstring(data).getroottree())
    con.check()
    return {
        f"{name}: {d['details']}"
        for name, result in con.failures(omit_passed_sub=True).items()
        for d in result["details"]
    }


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        # sarpy's own loggers only: a garbage-collected aiohttp session of an earlier test
        # logs "Unclosed client session" through asyncio at any moment
        if record.name == "validation" or record.name.startswith("sarpy"):
            self.messages.append(record.getMessage())


def sarpy_findings(xml: str | bytes) -> set[str]:
    """What sarpy's SICDType.is_valid(recursive=True) logs, plus 'is_valid False' if so."""
    from sarpy.io.complex.sicd_elements.SICD import SICDType

    text = xml.decode() if isinstance(xml, bytes) else xml
    handler = _Collect()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        sicd = SICDType.from_xml_string(text)
        valid = sicd.is_valid(recursive=True, stack=False)
    finally:
        root.removeHandler(handler)
    found = {" ".join(m.split()) for m in handler.messages}
    return found if valid else found | {"is_valid False"}


RECIPE_FINDINGS = {
    "check_iprbw_to_ss_osr_row: Row OSR >= 1.1": "the recipe crops a band wider than "
    "1.25 cycles/m to 0.8 m spacing: oversampling 1.0 by design (SARLO-80)",
    "check_iprbw_to_ss_osr_col: Col OSR >= 1.1": "as for rows",
    "check_iprbw_to_ss_osr_row: Row OSR <= 2.2": "the recipe zero-pads a band narrower than "
    "1 / (2.2 x 0.8 m) = 0.57 cycles/m to 0.8 m spacing: oversampled by design, nothing lost",
    "check_iprbw_to_ss_osr_col: Col OSR <= 2.2": "as for rows (the NGA example's 1.78 m "
    "azimuth spacing)",
}
"""Findings the 0.8 m recipe itself adds (any band resampled to 0.8 m), with the reason"""


def judged_chip(out_xml: str, ds: Any, crop: dict[str, list[int]], store_findings: tuple) -> Any:
    """The SICD (sarpy) of the chip `crop` of the store `ds` (whose SICD is `out_xml`), after
    what every chip must pass: sarkit's checker and sarpy's is_valid add nothing to the
    store's `store_findings` (sicdcheck's, sarpy's), and its ImageCorners are its own corner
    pixels, within 1 cm of their dense projection (sarkit)."""
    import numpy as np

    from sarlo_dask.geometry.chip import chip_sicd_xml
    from sarlo_dask.geometry.geolocation import ecf_to_llh, project_pixels
    from sarlo_dask.geometry.sicd import sicd_from_xml
    from sarlo_dask.geometry.tiles import tile_llh

    from .helpers import latlon_distance_m

    chip = chip_sicd_xml(out_xml, crop, lambda r, c: tile_llh(ds.lat, ds.lon, ds.hae, c, r)[:, :2])
    assert sicdcheck_findings(chip) <= store_findings[0], crop
    assert sarpy_findings(chip) <= store_findings[1], crop
    (a0, a1), (r0, r1) = crop["azimuth"], crop["range"]
    corners = np.array([[r0, a0], [r0, a1 - 1], [r1 - 1, a1 - 1], [r1 - 1, a0]], dtype=float)
    want = ecf_to_llh(project_pixels(out_xml, corners[:, 0], corners[:, 1]))
    sicd = sicd_from_xml(chip)
    icp = sicd.GeoData.ImageCorners.get_array(dtype="float64")
    assert latlon_distance_m(icp, want).max() < 0.01, crop
    return sicd
