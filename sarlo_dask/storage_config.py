"""Where the build's URLs get their fsspec options: one `storage:` section for every URL.

    storage:
      options: {}                       # every URL (credentials, endpoints, anon, ...)
      urls:                             # a URL under a prefix: these on top (the longest wins)
        s3://umbra-open-data-catalog/: {anon: true}
        s3://my-builds/: {profile: builder}

The stage sections' older keys (`standardize.storage_options`, `standardize.dem_storage_options`,
`tiles.storage_options`, `tiles.tile_cache_options`, `release.storage_options`) still apply,
to the URLs their section reads, between `options` and `urls`. Options tune execution: they are
in no digest, no record and no log line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from sarlo_dask.errors import redact


class StorageConfig(BaseModel):
    """The fsspec options of every URL of a build (see the module's docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    options: dict[str, Any] = Field(default_factory=dict, description="for every URL")
    urls: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="URL prefix -> options for the URLs under it, on top of `options` "
        "(the longest matching prefix)",
    )

    @field_validator("urls")
    @classmethod
    def _prefixes(cls, v: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for prefix in v:
            if not prefix.strip():
                raise ValueError("storage.urls: an empty prefix (use storage.options for all)")
        return v

    def for_url(self, url: str, section: dict[str, Any] | None = None) -> dict[str, Any]:
        """The options of `url`: `options`, then the section's own key (`section`), then the
        longest prefix of `urls` under which it lies."""
        under = [p for p in self.urls if url.startswith(p)]
        most = self.urls[max(under, key=len)] if under else {}
        return {**self.options, **(section or {}), **most}

    def same_for(self, url: str, a: dict[str, Any], b: dict[str, Any], keys: str) -> None:
        """ValueError when two sections' keys give `url` different options (a build opens
        {work} once: one set of options for it)."""
        one, other = self.for_url(url, a), self.for_url(url, b)
        if one != other:
            differ = sorted(k for k in one.keys() | other.keys() if one.get(k) != other.get(k))
            raise ValueError(
                f"{keys} give {redact(url)} different options ({', '.join(differ)}): a build "
                "opens it once; give its options once, in storage.urls or storage.options"
            )


def options_of(cfg: Any, url: str, own: str = "storage_options") -> dict[str, Any]:
    """The options of `url` read by a stage section `cfg` (its `storage` and its own key)."""
    return dict(cfg.storage.for_url(url, getattr(cfg, own)))


def resolver(cfg: Any, own: str = "storage_options") -> Callable[[str], dict[str, Any]]:
    """`options_of` for any URL `cfg`'s section reads (inputs: each its own)."""
    return lambda url: options_of(cfg, url, own)
