"""The release stage's configuration: splits, shard sizes, what a release holds.

Part of the build configuration (`sarlo_dask.config`, the `release:` section of its YAML).
"""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sarlo_dask import lineage
from sarlo_dask.lineage import execution
from sarlo_dask.storage_config import StorageConfig


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
    licence: str | None = Field(
        None,
        description="the dataset's licence (an SPDX id, e.g. CC-BY-4.0) when its inputs' terms "
        "allow one: the dataset card and croissant.json state it; None: 'other' (the inputs')",
    )
    optical_licence: str | None = Field(
        None,
        description="the optical source's licence (an SPDX id or a URL), in each sample's "
        "meta.json: shipping optical pixels (include_optical) is refused without one",
    )
    optical_attribution: str | None = Field(
        None, description="the attribution the optical source asks for, in each meta.json"
    )
    optical_date: date | None = Field(
        None,
        description="when the optical source's imagery was acquired (ISO date), if its "
        "provider says: each meta.json records it and its gap to the SAR collect, in days",
    )
    strict_splits: bool = Field(
        False,
        description="keep out of validation and test every sample whose footprint overlaps "
        "a training sample (listed in stats.json's ground.leakage either way)",
    )
    writers: list[str] = Field(
        default_factory=lambda: ["stac", "croissant", "card"],
        description="sample writers whose files the release holds beside its shards and "
        "index (sarlo_dask.io.writers: kinds registered or installed by entry point); by "
        "default the STAC catalogue, croissant.json and the dataset card; [] for none",
    )
    check_committed: Literal["sha256", "size"] = execution(
        "sha256",
        exclude=True,
        description="how a re-run checks the shards it reuses: their sha256 (every byte "
        "read) or their size alone",
    )
    storage_options: dict[str, Any] = execution(default_factory=dict, exclude=True, repr=False)
    storage: StorageConfig = execution(default_factory=StorageConfig, exclude=True, repr=False)

    @field_validator("splits")
    @classmethod
    def _splits(cls, v: dict[str, float]) -> dict[str, float]:
        unknown = set(v) - {"train", "validation", "test"}
        if unknown:
            raise ValueError(f"splits are train, validation and test, not {sorted(unknown)}")
        if any(r < 0 for r in v.values()) or abs(sum(v.values()) - 1) > 1e-6:
            raise ValueError(f"split ratios must be >= 0 and sum to 1, not {v}")
        return {k: v[k] for k in ("train", "validation", "test") if k in v}

    @field_validator("writers")
    @classmethod
    def _writers(cls, v: list[str]) -> list[str]:
        from sarlo_dask.io.writers import writer

        for name in v:
            writer(name)  # a ValueError naming the known kinds
        if len(set(v)) != len(v):
            raise ValueError(f"a sample writer is named twice in {v}")
        return v

    @model_validator(mode="after")
    def _licensed(self) -> ReleaseConfig:
        if self.include_optical and not (self.optical_licence or "").strip():
            raise ValueError(
                "include_optical ships the optical source's pixels, but its licence is not "
                "given: set release.optical_licence (an SPDX id or URL) in the configuration "
                "or --optical-licence on the command line"
            )
        return self

    def digest(self) -> str:
        # no writers, not strict: the digest releases made before them have (the writers'
        # versions are in the plan's digest: release.publish.release_plan)
        unused = (() if self.writers else ("writers",)) + (
            () if self.strict_splits else ("strict_splits",)
        )
        return lineage.digest(lineage.of_role(self, "shaping", unused))
