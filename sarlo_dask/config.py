"""One validated build configuration (pydantic), from YAML and command-line flags."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator


class StandardizeConfig(BaseModel):
    """How scenes become standardized scene stores."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    spacing: float = Field(0.8, gt=0, description="target slant-range spacing, metres (both axes)")
    min_spacing: float = Field(0.2, gt=0, description="selection: finest native spacing, m")
    max_spacing: float = Field(2.0, gt=0, description="selection: coarsest native spacing, m")
    min_size: int = Field(1024, ge=1, description="smallest output size in pixels (one tile)")
    chunk_azimuth: int = Field(1024, ge=16, description="azimuth samples per input chunk")
    chunk_range: int = Field(512, ge=16, description="range samples per chunk, azimuth pass")
    store_chunk: int = Field(512, ge=16, description="zarr chunk edge of the stored slc")
    deskew: bool = Field(True, description="centre each axis's spectrum before cropping")
    geolocation_bound_m: float = Field(1e-3, gt=0, description="tie-point interpolation bound")
    tie_point_max_step: int = Field(512, ge=4)
    hae: float | None = Field(None, description="projection height; None: the SCP's")
    storage_options: dict[str, Any] = Field(
        default_factory=dict,
        exclude=True,
        description="fsspec options (credentials stay out of provenance)",
    )

    @model_validator(mode="after")
    def _spacing_range(self) -> StandardizeConfig:
        if self.min_spacing > self.max_spacing:
            raise ValueError(f"min_spacing {self.min_spacing} > max_spacing {self.max_spacing}")
        return self

    def provenance(self) -> dict[str, Any]:
        """The parameters that shape the output (no credentials), for attrs and hashes."""
        return self.model_dump(mode="json")

    def digest(self) -> str:
        text = json.dumps(self.provenance(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


class TileConfig(BaseModel):
    """How scene stores become tiles with previews, geometry and optical views."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    size: int = Field(1024, ge=16, description="tile edge, pixels")
    stride: int = Field(512, ge=1, description="step between tiles, pixels")
    min_valid_fraction: float = Field(
        0.5, ge=0, le=1, description="keep a tile when this much is valid SAR"
    )
    preview_format: str = Field("png", pattern="^(png|jpg)$")
    preview_scale: str = Field(
        "auto",
        pattern="^(auto|amplitude|sigma0)$",
        description="auto: sigma0 dB where the SICD has radiometry",
    )
    speckle_filter: bool = Field(False, description="also write a refined-Lee preview")
    preview_low_percentile: float = Field(1.0, ge=0, le=100)
    preview_high_percentile: float = Field(99.0, ge=0, le=100)
    optical: str | None = Field(None, description="XYZ URL template, GeoTIFF or tile folder")
    zoom: int = Field(19, ge=0, le=24)
    fit_grid: int = Field(0, ge=0, description="0: fit the affine to the 4 corners (paper)")
    min_optical_fraction: float = Field(0.95, ge=0, le=1)
    max_residual_px: float = Field(1.0, gt=0)
    tile_cache: str = Field("", description="on-disk cache of downloaded XYZ tiles")
    save_mosaic: bool = Field(
        False,
        description="also write each tile's optical mosaic as "
        "a GeoTIFF (EPSG:3857 for XYZ sources)",
    )
    http_timeout: float = Field(10.0, gt=0, description="seconds per XYZ request")
    http_retries: int = Field(3, ge=0, description="retries per XYZ tile after a failure")
    http_backoff: float = Field(0.5, ge=0, description="first retry delay, doubling")
    http_concurrency: int = Field(4, ge=1, description="XYZ requests in flight per tile task")
    storage_options: dict[str, Any] = Field(default_factory=dict, exclude=True)

    def digest(self) -> str:
        text = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_config(path: str | Path | None = None, **overrides: Any) -> StandardizeConfig:
    """The scene-stage config from YAML (a `standardize:` section or a flat mapping) + flags."""
    return _load(StandardizeConfig, "standardize", path, overrides)


def load_tile_config(path: str | Path | None = None, **overrides: Any) -> TileConfig:
    """The tile-stage config from YAML (a `tiles:` section) + flags."""
    return _load(TileConfig, "tiles", path, overrides)


def _load(model: Any, section: str, path: str | Path | None, overrides: dict[str, Any]) -> Any:
    data: dict[str, Any] = {}
    if path is not None:
        loaded = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: expected a mapping of settings")
        if section in loaded:
            data = dict(loaded[section])
        elif not any(k in loaded for k in ("standardize", "tiles")):
            data = {k: v for k, v in loaded.items() if k in model.model_fields}
    data.update({k: v for k, v in overrides.items() if v is not None})
    return model(**data)
