"""One validated build configuration (pydantic), from YAML and command-line flags."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sarlo_dask import lineage
from sarlo_dask.caption_config import CaptionConfig as CaptionConfig
from sarlo_dask.caption_config import PromptSpec as PromptSpec
from sarlo_dask.errors import redact
from sarlo_dask.lineage import execution, selection
from sarlo_dask.release_config import ReleaseConfig as ReleaseConfig
from sarlo_dask.storage_config import StorageConfig as StorageConfig
from sarlo_dask.store import canonical, canonical_spec


class StandardizeConfig(BaseModel):
    """How scenes become standardized scene stores."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    spacing: float = Field(0.8, gt=0, description="target slant-range spacing, metres (both axes)")
    select_by: Literal["resolution", "spacing"] = selection(
        "resolution",
        description="what selects scenes by their native detail: resolution (Grid ImpRespWid, "
        "between min_resolution and max_resolution: the recipe's 20 cm to 2 m) or spacing "
        "(Grid SS, between min_spacing and max_spacing)",
    )
    min_resolution: float = selection(
        0.2, gt=0, description="selection: finest native resolution (ImpRespWid), m"
    )
    max_resolution: float = selection(
        2.0, gt=0, description="selection: coarsest native resolution (ImpRespWid), m"
    )
    min_spacing: float = selection(
        0.2, gt=0, description="selection (select_by: spacing): finest native spacing (SS), m"
    )
    max_spacing: float = selection(
        2.0, gt=0, description="selection (select_by: spacing): coarsest native spacing (SS), m"
    )
    polarizations: tuple[str, ...] = selection(
        ("V:V", "H:H"), description="selection: processed Tx:Rcv polarizations (co-pol)"
    )
    min_size: int = selection(1024, ge=1, description="smallest output size in pixels (one tile)")
    chunk_azimuth: int = execution(1024, ge=16, description="azimuth lines per block, range pass")
    chunk_range: int = execution(
        512, ge=16, description="range lines per block read (one request each), azimuth pass"
    )
    store_chunk: int = execution(512, ge=16, description="zarr chunk edge of the stored slc")
    deskew: bool = Field(True, description="centre each axis's spectrum before cropping")
    geolocation_bound_m: float = Field(1e-3, gt=0, description="tie-point interpolation bound")
    tie_point_max_step: int = Field(512, ge=4)
    hae: float | None = Field(None, description="projection height; None: the SCP's")
    dem: str | None = Field(
        None,
        description="DEM the pixels are projected onto: a GeoTIFF/COG, a VRT or a folder of "
        "them, a path or any fsspec URL; None: the constant height `hae`",
    )
    dem_vertical_datum: str = Field(
        "auto",
        min_length=1,
        description="what the DEM's heights are measured from: auto (its CRS says: EPSG:4979 "
        "ellipsoidal, EPSG:4326+3855 EGM2008, ...), hae, egm2008, egm96, or a geoid grid file",
    )
    dem_use: str = Field(
        "geolocation",
        pattern="^(geolocation|check)$",
        description="geolocation: tie points on the DEM; check: tie points at `hae` as without "
        "a DEM, the DEM only measures how far each tile's optical view is off (and flags it)",
    )
    dem_bound_m: float = Field(
        0.2,
        gt=0,
        description="tie-point interpolation bound on the DEM surface, metres: a quarter of a "
        "0.8 m pixel (a bilinear DEM bends at every DEM pixel, so the error shrinks only in "
        "proportion to the step; the DEM itself is good to metres)",
    )
    dem_storage_options: dict[str, Any] = execution(
        default_factory=dict,
        exclude=True,
        repr=False,
        description="fsspec options of the DEM's URL (e.g. anon: true for a public bucket)",
    )
    device: str = execution(
        "cpu",
        pattern="^(auto|cpu|cuda)$",
        description="where the resampling FFTs run: cpu; cuda (CuPy, equal to the CPU's within "
        "float32 tolerance, not bit for bit; not yet run on a real GPU); auto: cuda when every "
        "worker declares a GPU resource",
    )
    storage_options: dict[str, Any] = execution(
        default_factory=dict,
        exclude=True,
        repr=False,
        description="fsspec options (credentials stay out of provenance)",
    )
    storage: StorageConfig = execution(default_factory=StorageConfig, exclude=True, repr=False)

    @model_validator(mode="after")
    def _spacing_range(self) -> StandardizeConfig:
        if self.min_spacing > self.max_spacing:
            raise ValueError(f"min_spacing {self.min_spacing} > max_spacing {self.max_spacing}")
        if self.min_resolution > self.max_resolution:
            raise ValueError(
                f"min_resolution {self.min_resolution} > max_resolution {self.max_resolution}"
            )
        return self

    def native_selection(self) -> tuple[str, float, float]:
        """What selects scenes by native detail and its bounds: ('resolution' or 'spacing',
        finest, coarsest), in metres."""
        if self.select_by == "resolution":
            return "resolution", self.min_resolution, self.max_resolution
        return "spacing", self.min_spacing, self.max_spacing

    @field_validator("dem")
    @classmethod
    def _dem_path(cls, v: str | None) -> str | None:
        return None if v is None else canonical_spec(v)  # any spelling of a file: one digest

    @field_validator("dem_vertical_datum")
    @classmethod
    def _geoid_path(cls, v: str) -> str:
        return canonical(v) if os.path.isfile(v) else v  # else a keyword, or a grid PROJ finds

    def provenance(self) -> dict[str, Any]:
        """The settings that shape the store (no credentials, no execution or selection
        settings: lineage), for its attributes and its digest; the DEM's only when there is a
        DEM (else they shape nothing)."""
        unused = set() if self.dem else {"dem", "dem_vertical_datum", "dem_use", "dem_bound_m"}
        out = lineage.of_role(self, "shaping", unused)
        if self.dem:  # a token in the DEM's URL is neither stored nor part of the digest
            out["dem"] = redact(self.dem)
        return out

    def digest(self) -> str:
        return lineage.digest(self.provenance())

    def selection_digest(self) -> str:
        """Of the settings that select scenes: a store reused under others is checked again."""
        return lineage.digest(lineage.of_role(self, "selection"))


class TileConfig(BaseModel):
    """How scene stores become tiles with previews, geometry and optical views."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    size: int = Field(1024, ge=16, description="tile edge, pixels")
    stride: int = Field(512, ge=1, description="step between tiles, pixels")
    min_valid_fraction: float = Field(
        0.5, ge=0, le=1, description="keep a tile when this much is valid SAR"
    )
    preview_format: str = Field("png", pattern="^(png|jpg)$")
    png_compress_level: int = Field(
        1,
        ge=0,
        le=9,
        description="zlib level of the PNGs: speckle gains under 4% at any level, so 1 "
        "(the optical PNG grows by about half over level 6, still small next to the .npy)",
    )
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
    optical_mode: str = Field(
        "fetch",
        pattern="^(fetch|metadata)$",
        description="fetch: warp each tile's optical view at build time; metadata: record "
        "the source, zoom and fit points only, fetching nothing (`sarlo optical reconstruct` "
        "makes the view later, as SARLO-80 v2 ships it)",
    )
    fit_grid: int = Field(0, ge=0, description="0: fit the affine to the 4 corners (paper)")
    min_optical_fraction: float = Field(0.95, ge=0, le=1)
    max_residual_px: float = Field(1.0, gt=0)
    max_affine_residual_px: float = Field(
        0.5,
        gt=0,
        description="one affine maps a tile's optical view when it follows the tie-point "
        "geolocation this closely (SAR px); else a mesh (piecewise affine) that does",
    )
    max_mesh_grid: int = Field(
        33,
        description="finest mesh tried (3, 5, 9, 17 or 33 control points a side), halving "
        "the cell from 3 until the residual is max_affine_residual_px; 0: never a mesh",
    )
    tile_cache: str = execution(
        "",
        description="cache of downloaded XYZ tiles: a local folder (default "
        "~/.cache/sarlo/tiles) or an fsspec URL (s3://...) every worker shares",
    )
    save_mosaic: bool = Field(
        False,
        description="also write each tile's optical mosaic as "
        "a GeoTIFF (EPSG:3857 for XYZ sources)",
    )
    http_timeout: float = execution(10.0, gt=0, description="seconds per XYZ request")
    http_retries: int = execution(3, ge=0, description="retries per XYZ tile after a failure")
    http_backoff: float = execution(0.5, ge=0, description="first retry delay, doubling")
    http_concurrency: int = execution(4, ge=1, description="XYZ requests in flight per tile task")
    http_rate: float = execution(
        0.0, ge=0, description="XYZ requests per second to the host from each worker; 0: no limit"
    )
    device: str = execution(
        "cpu",
        pattern="^(auto|cpu|cuda)$",
        description="where the optical warp runs: cpu; cuda (CuPy, not yet run on a real GPU); "
        "auto: cuda when every worker declares a GPU",
    )
    decoded_cache_mb: int = execution(
        512,
        ge=0,
        description="decoded XYZ tiles kept per worker process (256 KiB each): neighbouring "
        "windows share most of theirs",
    )
    landcover: str | None = Field(
        None,
        description="a land-cover raster of uint8 class codes (ESA WorldCover, Copernicus: "
        "GeoTIFF, COG or VRT on any fsspec URL): each tile gets KEY.landcover.png, its codes "
        "at every pixel (nearest), and their shares in meta.json",
    )
    max_terrain_shift_px: float | None = Field(
        1.0,
        gt=0,
        description="with standardize.dem_use check: a tile whose optical view the terrain "
        "puts further off than this (SAR px) gets no optical image; None: only record it",
    )
    storage_options: dict[str, Any] = execution(default_factory=dict, exclude=True, repr=False)
    storage: StorageConfig = execution(default_factory=StorageConfig, exclude=True, repr=False)
    tile_cache_options: dict[str, Any] = execution(
        default_factory=dict,
        exclude=True,
        repr=False,
        description="storage options of tile_cache's URL",
    )
    prefetch_tiles: int = execution(
        256,
        ge=0,
        description="XYZ tiles per prefetch task: before the tile tasks, every XYZ tile the "
        "windows need is fetched into the cache once, by one task; 0: no prefetch",
    )

    @field_validator("optical")
    @classmethod
    def _optical_path(cls, v: str | None) -> str | None:
        from sarlo_dask.optical.sources import canonical_source

        return None if v is None else canonical_source(v)  # any spelling of it: one digest

    @field_validator("tile_cache")
    @classmethod
    def _cache_path(cls, v: str) -> str:
        return canonical(v) if v else v  # the same folder from every worker

    @field_validator("max_mesh_grid")
    @classmethod
    def _mesh_grid(cls, n: int) -> int:
        if n not in (0, 3, 5, 9, 17, 33):
            raise ValueError(f"max_mesh_grid {n}: use 0 (no mesh) or 3, 5, 9, 17, 33")
        return n

    def digest(self) -> str:
        """Of the settings that shape the tiles (lineage): how they are fetched (timeouts,
        retries, concurrency, caches) is left out, so changing it rebuilds nothing."""
        shaping = lineage.of_role(self, "shaping", () if self.landcover else ("landcover",))
        for name in ("optical", "landcover"):  # a rotated token in a URL rebuilds nothing
            if isinstance(shaping.get(name), str):
                shaping[name] = redact(shaping[name])
        return lineage.digest(shaping)


Device = TypeVar("Device", "StandardizeConfig", "TileConfig")


def on_device(cfg: Device, gpus: bool) -> Device:
    """`cfg` with device 'auto' settled: 'cuda' where `gpus` (every worker has one), else
    'cpu'; what the output's provenance records."""
    if cfg.device != "auto":
        return cfg
    return cfg.model_copy(update={"device": "cuda" if gpus else "cpu"})


def load_release_config(path: str | Path | None = None, **overrides: Any) -> ReleaseConfig:
    """The release config from YAML (a `release:` section) + flags."""
    return _load(ReleaseConfig, "release", path, overrides)


def load_config(path: str | Path | None = None, **overrides: Any) -> StandardizeConfig:
    """The scene-stage config from YAML (a `standardize:` section or a flat mapping) + flags."""
    return _load(StandardizeConfig, "standardize", path, overrides)


def load_tile_config(path: str | Path | None = None, **overrides: Any) -> TileConfig:
    """The tile-stage config from YAML (a `tiles:` section) + flags."""
    return _load(TileConfig, "tiles", path, overrides)


def load_caption_config(path: str | Path | None = None, **overrides: Any) -> CaptionConfig:
    """The caption-stage config from YAML (a `captions:` section) + flags."""
    return _load(CaptionConfig, "captions", path, overrides)


SECTIONS: dict[str, type[BaseModel]] = {
    "standardize": StandardizeConfig,
    "tiles": TileConfig,
    "captions": CaptionConfig,
    "release": ReleaseConfig,
    "storage": StorageConfig,
}
"""the sections of a build YAML and their models"""


def read_settings(path: str | Path) -> dict[str, dict[str, Any]]:
    """A build YAML's sections, checked: the file parses (else its line is named), every
    section is known and a mapping, every key of a section is a setting of its model; a
    flat mapping is the `standardize` section. A ValueError names the file and the culprit."""
    try:
        loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ValueError(f"malformed YAML{where}: {problem}") from None
    if not isinstance(loaded, dict):
        raise ValueError("expected a mapping of settings")
    fields = StandardizeConfig.model_fields
    if not any(k in SECTIONS for k in loaded):
        for key, value in loaded.items():  # a mapping under an unknown name is a section
            if key not in fields and isinstance(value, dict):
                raise ValueError(f"unknown section {key!r} (sections: {', '.join(SECTIONS)})")
        loaded = {"standardize": loaded}  # the flat form: the scene stage's settings
    sections: dict[str, dict[str, Any]] = {}
    for name, values in loaded.items():
        if name not in SECTIONS:
            raise ValueError(f"unknown section {name!r} (sections: {', '.join(SECTIONS)})")
        if values is None:
            values = {}
        if not isinstance(values, dict):
            raise ValueError(f"section {name!r} is not a mapping of settings")
        known = set(SECTIONS[name].model_fields) - {"storage"}  # a section of its own
        for key in values:
            if key not in known:
                raise ValueError(
                    f"unknown setting {name}.{key} (settings: {', '.join(sorted(known))})"
                )
        sections[name] = dict(values)
    return sections


def _load(model: Any, section: str, path: str | Path | None, overrides: dict[str, Any]) -> Any:
    data: dict[str, Any] = {}
    if path is not None:
        sections = read_settings(path)
        data = sections.get(section, {})
        if "storage" in model.model_fields and "storage" in sections:  # one for every URL
            data["storage"] = sections["storage"]
    data.update({k: v for k, v in overrides.items() if v is not None})
    return model(**data)
