"""One build's settings in one object: the four stage sections and the storage section every
URL of the build is opened with, read once from a build YAML (`sarlo build --config`), and
the build's two stores, {work} and {out}, each made here, once.

    from sarlo_dask import BuildConfig, build_dataset
    cfg = BuildConfig.load("build.yaml", tiles={"zoom": 17})
    build_dataset(urls, "s3://b/work", "s3://b/out", cfg, client)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sarlo_dask.config import (
    CaptionConfig,
    ReleaseConfig,
    StandardizeConfig,
    StorageConfig,
    TileConfig,
    read_settings,
)
from sarlo_dask.storage_config import section_store
from sarlo_dask.store import Store

STAGES = ("standardize", "tiles", "captions", "release")
"""the stage sections, in the order a build runs them"""


class BuildConfig(BaseModel):
    """The settings of a whole build: one section per stage and one `storage` section that
    every section reads its URLs' options from (the sections' own storage keys still apply,
    see sarlo_dask.storage_config). Each section's digest is its own: a change in one
    rebuilds only what that stage makes. Make a changed one with `BuildConfig.of` or the
    constructor (they check and share the storage section), not `model_copy`."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    standardize: StandardizeConfig = Field(default_factory=StandardizeConfig)
    tiles: TileConfig = Field(default_factory=TileConfig)
    captions: CaptionConfig = Field(default_factory=CaptionConfig)
    release: ReleaseConfig = Field(default_factory=ReleaseConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig, repr=False, exclude=True)

    def __repr__(self) -> str:  # the sections' reprs hide their options; so does this
        return (
            f"BuildConfig(standardize={self.standardize!r}, tiles={self.tiles!r}, "
            f"captions={self.captions!r}, release={self.release!r}, storage={self.storage!r})"
        )

    @model_validator(mode="after")
    def _one_storage(self) -> BuildConfig:
        """Every section reads the build's storage section: the one given here, else the one
        its sections were made with (they must agree: a build has one)."""
        sections: list[StandardizeConfig | TileConfig | ReleaseConfig]
        sections = [self.standardize, self.tiles, self.release]
        if "storage" not in self.model_fields_set:
            given = {s.storage.model_dump_json() for s in sections}
            if len(given) > 1:
                raise ValueError("the stage sections were made with different storage sections")
            object.__setattr__(self, "storage", sections[0].storage)
        for name in ("standardize", "tiles", "release"):
            section = getattr(self, name)
            if section.storage is not self.storage:  # one object: equal is not enough
                object.__setattr__(self, name, section.model_copy(update={"storage": self.storage}))
        return self

    @classmethod
    def load(cls, path: str | Path | None = None, **overrides: dict[str, Any]) -> BuildConfig:
        """The build YAML at `path` (None: the defaults), with `overrides` per section
        (`tiles={"zoom": 17}`; a value None is no override: a flag not given). A
        ValidationError names each bad setting by section (`tiles.zoom`); a ValueError names
        a malformed file, an unknown section or setting."""
        unknown = set(overrides) - set(STAGES)
        if unknown:
            raise ValueError(f"unknown sections {sorted(unknown)} (sections: {STAGES})")
        sections: dict[str, Any] = read_settings(path) if path is not None else {}
        for name, given in overrides.items():
            values = {k: v for k, v in given.items() if v is not None}
            sections[name] = {**sections.get(name, {}), **values}
        return cls.model_validate(sections)

    @classmethod
    def of(
        cls,
        standardize: StandardizeConfig,
        tiles: TileConfig,
        captions: CaptionConfig,
        release: ReleaseConfig,
    ) -> BuildConfig:
        """The build of four stage sections made in code (their storage sections agree)."""
        return cls(standardize=standardize, tiles=tiles, captions=captions, release=release)

    def stages(self) -> tuple[StandardizeConfig, TileConfig, CaptionConfig, ReleaseConfig]:
        """The four stage sections, in the order a build runs them."""
        return self.standardize, self.tiles, self.captions, self.release

    def work_store(self, url: str | Store) -> Store:
        """{work}, opened once with the standardize and tiles sections' options together
        (ValueError naming both keys when they give one option different values)."""
        if isinstance(url, Store):
            return url
        keys = "standardize.storage_options and tiles.storage_options"
        scene, tiles = self.standardize.storage_options, self.tiles.storage_options
        return Store.of(url, self.storage.work_options(url, scene, tiles, keys))

    def out_store(self, url: str | Store) -> Store:
        """{out}, opened with the release section's options."""
        return section_store(url, self.release)
