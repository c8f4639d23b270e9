"""Which geometry model projects a SICD's pixels, and why (pure functions, no I/O).

SICD Vol. 3 projects a pixel from its Grid: an RGZERO grid through RMA.INCA (closest-approach
time and range), XRGYCR and XCTYAT grids through the grid's own unit vectors (RMA's RMCR and
RMAT images), and an RGAZIM grid through the PFA or RgAzComp block that ImageFormAlgo names.
sarkit and sarpy follow it. So the algorithm's name matters for RGAZIM grids only; the
resampling never depended on it (it reads the Grid's spectral description).

Capella's open-data SICDs declare ImageFormAlgo OTHER ("Backprojected to DEM") beside an
RGZERO grid and a full RMA/INCA block. Such a product is accepted when its grid's model is
populated and sarkit's consistency checks of that model pass on it (an independent
reference: the checks `sicdcheck` runs); it is refused, with the reason, when no model is
there or the model contradicts the product's own geometry. `ProjectionModel.record()` is what
meta.json says about it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DECLARED = ("PFA", "RMA", "RGAZCOMP")
"""image formation algorithms SICD defines a projection for"""

GRID_MODELS = {"RGZERO": "INCA", "XRGYCR": "RMCR", "XCTYAT": "RMAT"}
"""grid types projected from an RMA block, and the RMA image type each needs"""

MODEL_CHECKS = {
    "INCA": ("check_inca", "check_rma_inca_polys"),
    "RMCR": ("check_grid_unit_vector", "check_grid_uvect_orthogonal"),
    "RMAT": ("check_grid_unit_vector", "check_grid_uvect_orthogonal"),
}
"""sarkit's consistency checks of each RMA model (SicdConsistency method names)"""


@dataclass(frozen=True)
class ProjectionModel:
    """The product's declared image formation, the model that projects it, and why."""

    declared: str
    """ImageFormation.ImageFormAlgo as the product says (OTHER, PFA, RMA, RGAZCOMP)"""
    model: str
    """what projects its pixels: PFA, RGAZCOMP, RMA/INCA, RMA/RMCR or RMA/RMAT"""
    why: str

    def record(self) -> dict[str, str]:
        """meta.json's `acquisition.image_formation`."""
        return {"declared": self.declared, "model": self.model, "why": self.why}


def sicd_field(obj: Any, path: str) -> Any:
    """The field at dotted `path` of a sarpy SICD structure, or None where a part is absent."""
    for name in path.split("."):
        obj = getattr(obj, name, None) if obj is not None else None
    return obj


def _rma_model(sicd: Any, grid_type: str) -> str | None:
    """'RMA/INCA' (RMCR, RMAT) when the RMA block holds what the grid's projection reads."""
    image_type = GRID_MODELS.get(grid_type)
    rma = sicd.RMA
    block = None if rma is None or image_type is None else getattr(rma, image_type, None)
    if block is None:
        return None
    if image_type == "INCA" and any(
        getattr(block, f, None) is None for f in ("R_CA_SCP", "TimeCAPoly", "DRateSFPoly")
    ):
        return None
    return f"RMA/{image_type}"


def projection_model(sicd: Any) -> ProjectionModel | str:
    """The model that projects the SICD (sarpy structure), or why none does. Consistency of
    an undeclared model is `model_findings`' part: this reads only what is populated."""
    declared = str(sicd_field(sicd, "ImageFormation.ImageFormAlgo") or "")
    grid_type = str(sicd_field(sicd, "Grid.Type") or "")
    if declared in DECLARED:
        name = declared
        if declared == "RMA":
            name = _rma_model(sicd, grid_type) or f"RMA/{sicd_field(sicd, 'RMA.ImageType')}"
        return ProjectionModel(declared, name, "declared by ImageFormation.ImageFormAlgo")
    if not declared:
        return "(none declared: no ImageFormation.ImageFormAlgo)"
    if grid_type == "RGAZIM":
        return (
            f"{declared} on an RGAZIM grid: SICD projects RGAZIM pixels only as PFA or "
            "RGAZCOMP, and the product names neither"
        )
    model = _rma_model(sicd, grid_type)
    if model is None:
        need = GRID_MODELS.get(grid_type)
        block = f"populated RMA/{need} block" if need else "projection model SICD defines for it"
        return f"{declared} on a {grid_type or 'missing'} grid with no {block}"
    return ProjectionModel(
        declared,
        model,
        f"ImageFormAlgo {declared}: its {grid_type} grid is projected through the populated "
        f"{model} block, consistent with its geometry (sarkit: "
        f"{', '.join(MODEL_CHECKS[model.split('/')[1]])})",
    )


def model_findings(xml: str, model: str) -> list[str]:
    """sarkit's failed consistency checks of `model` ('RMA/INCA', ...) on the SICD `xml`:
    'check: detail' lines, empty when the model agrees with the product's geometry."""
    from lxml import etree
    from sarkit.verification import SicdConsistency

    names = MODEL_CHECKS.get(model.split("/")[-1], ())
    if not names:
        return []
    con = SicdConsistency.from_parts(etree.fromstring(xml.encode()).getroottree())
    con.check(list(names))
    return [
        f"{name}: {d['details']}"
        for name, result in con.failures(omit_passed_sub=True).items()
        for d in result["details"]
    ]
