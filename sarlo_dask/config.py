"""One validated build configuration (pydantic), from YAML and command-line flags."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class StandardizeConfig(BaseModel):
    """How scenes become standardized scene stores."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    spacing: float = Field(0.8, gt=0, description="target slant-range spacing, metres (both axes)")
    min_spacing: float = Field(0.2, gt=0, description="selection: finest native spacing, m")
    max_spacing: float = Field(2.0, gt=0, description="selection: coarsest native spacing, m")
    polarizations: tuple[str, ...] = Field(
        ("V:V", "H:H"), description="selection: processed Tx:Rcv polarizations (co-pol)"
    )
    min_size: int = Field(1024, ge=1, description="smallest output size in pixels (one tile)")
    chunk_azimuth: int = Field(1024, ge=16, description="azimuth lines per block, range pass")
    chunk_range: int = Field(
        512, ge=16, description="range lines per block read (one request each), azimuth pass"
    )
    store_chunk: int = Field(512, ge=16, description="zarr chunk edge of the stored slc")
    deskew: bool = Field(True, description="centre each axis's spectrum before cropping")
    geolocation_bound_m: float = Field(1e-3, gt=0, description="tie-point interpolation bound")
    tie_point_max_step: int = Field(512, ge=4)
    hae: float | None = Field(None, description="projection height; None: the SCP's")
    device: str = Field(
        "auto",
        pattern="^(auto|cpu|cuda)$",
        description="where the resampling FFTs run; auto: cuda when every worker declares a "
        "GPU resource (equal to the CPU's within float32 tolerance, not bit for bit)",
    )
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
    tile_cache: str = Field(
        "",
        description="cache of downloaded XYZ tiles: a local folder (default "
        "~/.cache/sarlo/tiles) or an fsspec URL (s3://...) every worker shares",
    )
    save_mosaic: bool = Field(
        False,
        description="also write each tile's optical mosaic as "
        "a GeoTIFF (EPSG:3857 for XYZ sources)",
    )
    http_timeout: float = Field(10.0, gt=0, description="seconds per XYZ request")
    http_retries: int = Field(3, ge=0, description="retries per XYZ tile after a failure")
    http_backoff: float = Field(0.5, ge=0, description="first retry delay, doubling")
    http_concurrency: int = Field(4, ge=1, description="XYZ requests in flight per tile task")
    http_rate: float = Field(
        0.0, ge=0, description="XYZ requests per second to the host from each worker; 0: no limit"
    )
    device: str = Field(
        "auto",
        pattern="^(auto|cpu|cuda)$",
        description="where the optical warp runs; auto: cuda when every worker declares a GPU",
    )
    decoded_cache_mb: int = Field(
        512,
        ge=0,
        description="decoded XYZ tiles kept per worker process (256 KiB each): neighbouring "
        "windows share most of theirs",
    )
    storage_options: dict[str, Any] = Field(default_factory=dict, exclude=True)
    tile_cache_options: dict[str, Any] = Field(
        default_factory=dict, exclude=True, description="storage options of tile_cache's URL"
    )
    prefetch_tiles: int = Field(
        256,
        ge=0,
        description="XYZ tiles per prefetch task: before the tile tasks, every XYZ tile the "
        "windows need is fetched into the cache once, by one task; 0: no prefetch",
    )

    def digest(self) -> str:
        """Of the settings that shape the tiles: how they are fetched (timeouts, retries,
        concurrency, caches) is left out, so changing it rebuilds nothing."""
        fetch = {"http_timeout", "http_retries", "http_backoff", "http_concurrency", "http_rate"}
        fetch |= {"prefetch_tiles"}
        shaping = self.model_dump(mode="json", exclude=fetch | {"decoded_cache_mb", "tile_cache"})
        return hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()[:16]


Device = TypeVar("Device", "StandardizeConfig", "TileConfig")


def on_device(cfg: Device, gpus: bool) -> Device:
    """`cfg` with device 'auto' settled: 'cuda' where `gpus` (every worker has one), else
    'cpu'; what the output's provenance records."""
    if cfg.device != "auto":
        return cfg
    return cfg.model_copy(update={"device": "cuda" if gpus else "cpu"})


STYLE = "Do not use color terms in the text description. Avoid hypothesis or vague wording."


class PromptSpec(BaseModel):
    """One caption length: the instruction for chat VLMs, a text prefix for captioners
    (BLIP's conditional text; empty for none) and the generation limits."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str
    prefix: str = ""
    max_new_tokens: int = Field(64, ge=1)
    min_new_tokens: int = Field(0, ge=0)


def _default_prompts() -> dict[str, PromptSpec]:
    return {
        "SHORT": PromptSpec(
            text="Describe the key structural features of the satellite image in a few words. "
            + STYLE,
            max_new_tokens=32,
        ),
        "MID": PromptSpec(
            text="Describe the satellite image in one or two sentences: the main land cover, "
            "structures and their layout. " + STYLE,
            max_new_tokens=64,
        ),
        "LONG": PromptSpec(
            text="Describe the satellite image in detail: land cover, buildings, roads, water, "
            "vegetation and how they are arranged. " + STYLE,
            max_new_tokens=128,
        ),
    }


class CaptionConfig(BaseModel):
    """The caption stage: which model, on what, with which prompts; None model: no captions."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str | None = Field(
        None,
        description="local folder or hub id of the caption model (backend openai: the served "
        "model's name)",
    )
    backend: str = Field(
        "transformers",
        pattern="^(transformers|openai)$",
        description="transformers: the model in the Dask workers; openai: OpenAI-compatible "
        "servers (vLLM, SGLang, LMDeploy, TGI, transformers serve)",
    )
    servers: tuple[str, ...] = Field(
        (), description="backend openai: base URLs of the servers, e.g. http://node1:8000/v1"
    )
    api_key_env: str | None = Field(
        None, description="backend openai: environment variable holding the API key (never stored)"
    )
    image_format: str = Field(
        "png", pattern="^(png|jpeg)$", description="backend openai: the image's data-URL format"
    )
    image_size: int | None = Field(
        None, ge=16, description="backend openai: longest side sent, in pixels (None: as is)"
    )
    seed: int = Field(0, description="backend openai: the sampling seed sent (temperature is 0)")
    concurrency: int = Field(
        8, ge=1, description="backend openai: requests in flight per server, the whole build"
    )
    request_timeout: float = Field(120.0, gt=0, description="backend openai: seconds per request")
    request_retries: int = Field(
        4,
        ge=0,
        description="backend openai: retries of a failed request (429 and Retry-After honoured)",
    )
    kind: str = Field(
        "auto",
        pattern="^(auto|chat|captioner)$",
        description="auto: chat when the processor has a chat template",
    )
    image: str = Field(
        "optical",
        pattern="^(optical|sar)$",
        description="caption the warped optical patch, or the SAR preview (builds without optical)",
    )
    device: str = Field("auto", pattern="^(auto|cpu|cuda)$")
    dtype: str = Field(
        "auto",
        pattern="^(auto|float16|bfloat16|float32)$",
        description="auto: bf16 (else fp16) on GPU, fp32 on CPU",
    )
    batch_size: int = Field(8, ge=1, description="tiles per model call")
    max_in_flight: int = Field(
        0, ge=0, description="caption batches queued on the cluster at once; 0: 2 per worker"
    )
    retries: int = Field(2, ge=0, description="retries of a failed caption batch")
    prompts: dict[str, PromptSpec] = Field(default_factory=_default_prompts)
    rewrite_model: str | None = Field(
        None, description="optional text-generation model for an LLM cleanup pass"
    )
    rewrite_instruction: str = (
        "Rewrite this satellite image description without color terms and without "
        "speculative wording; keep every fact. Answer with the description only."
    )
    rewrite_max_new_tokens: int = Field(160, ge=1)
    trust_remote_code: bool = False

    @field_validator("prompts")
    @classmethod
    def _three(cls, v: dict[str, PromptSpec]) -> dict[str, PromptSpec]:
        if set(v) != {"SHORT", "MID", "LONG"}:
            raise ValueError(f"prompts must be SHORT, MID and LONG, not {sorted(v)}")
        return v

    @model_validator(mode="after")
    def _servers(self) -> CaptionConfig:
        if self.backend == "openai" and self.model and not self.servers:
            raise ValueError("captions.backend openai needs captions.servers (base URLs)")
        bad = [u for u in self.servers if not u.startswith(("http://", "https://"))]
        if bad:
            raise ValueError(f"captions.servers must be http(s) URLs, not {bad}")
        return self

    def digest(self) -> str:
        """Of the settings that shape the captions: not where they are computed (servers,
        key), nor how many requests or batches are queued, timed or retried."""
        transport = {"max_in_flight", "retries", "servers", "api_key_env", "concurrency"}
        transport |= {"request_timeout", "request_retries"}
        if self.backend == "transformers":  # the settings of the other backend shape nothing
            transport |= {"backend", "image_format", "image_size", "seed"}
        else:
            transport |= {"kind", "device", "dtype", "trust_remote_code"}
        shaping = self.model_dump(mode="json", exclude=transport)
        return hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()[:16]


class ReleaseConfig(BaseModel):
    """How samples become WebDataset shards: splits, shard sizes, what is included."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    splits: dict[str, float] = Field(
        default_factory=lambda: {"train": 0.8, "validation": 0.1, "test": 0.1},
        description="share of samples per split; whole satellite passes go to one split",
    )
    balance: float = Field(
        1.0, ge=0, description="weight of label balance against split sizes in the pass split"
    )
    samples_per_shard: int = Field(100, ge=1)
    shards_per_chunk: int = Field(100, ge=1)
    include_optical: bool = Field(
        False, description="add <key>.optic.png (most optical sources forbid redistribution)"
    )
    storage_options: dict[str, Any] = Field(default_factory=dict, exclude=True)

    @field_validator("splits")
    @classmethod
    def _splits(cls, v: dict[str, float]) -> dict[str, float]:
        unknown = set(v) - {"train", "validation", "test"}
        if unknown:
            raise ValueError(f"splits are train, validation and test, not {sorted(unknown)}")
        if any(r < 0 for r in v.values()) or abs(sum(v.values()) - 1) > 1e-6:
            raise ValueError(f"split ratios must be >= 0 and sum to 1, not {v}")
        return {k: v[k] for k in ("train", "validation", "test") if k in v}

    def digest(self) -> str:
        text = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


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
        fields = SECTIONS[name].model_fields
        for key in values:
            if key not in fields:
                raise ValueError(
                    f"unknown setting {name}.{key} (settings: {', '.join(sorted(fields))})"
                )
        sections[name] = dict(values)
    return sections


def _load(model: Any, section: str, path: str | Path | None, overrides: dict[str, Any]) -> Any:
    data: dict[str, Any] = {}
    if path is not None:
        data = read_settings(path).get(section, {})
    data.update({k: v for k, v in overrides.items() if v is not None})
    return model(**data)
