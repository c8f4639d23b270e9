"""Where the build's URLs get their fsspec options: one `storage:` section for every URL.

    storage:
      options: {}                       # every URL but http(s) (credentials, endpoints, ...)
      urls:                             # a URL under a prefix: these on top (the longest wins)
        s3://umbra-open-data-catalog: {anon: true}
        s3://my-builds: {profile: builder}

The stage sections' older keys (`standardize.storage_options`, `standardize.dem_storage_options`,
`tiles.storage_options`, `tiles.tile_cache_options`, `release.storage_options`) still apply,
to the URLs their section reads, between `options` and `urls`; a build opens {work} with the
union of standardize's and tiles' (refused when both give one option different values).
Options tune execution: they are in no digest, no record and no repr.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from sarlo_dask.errors import redact
from sarlo_dask.store import Store


class StorageConfig(BaseModel):
    """The fsspec options of every URL of a build (see the module's docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    def __repr__(self) -> str:  # credentials: never in a log line or an error
        return f"StorageConfig({len(self.options)} options, {len(self.urls)} URL prefixes)"

    __str__ = __repr__

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
        """The options of `url`: `options` (not for http(s): a web server takes no storage
        credentials), then the section's own key (`section`), then those of the longest
        prefix of `urls` under which it lies (at a path boundary: `s3://b` is not under
        `s3://bucket`). Nested mappings (client_kwargs) merge key by key."""
        url = url.rstrip("/")
        under = [p for p in self.urls if url == p.rstrip("/") or url.startswith(_folder(p))]
        most = self.urls[max(under, key=len)] if under else {}
        base = {} if url.startswith(("http://", "https://")) else self.options
        return _merge(_merge(base, section or {}), most)

    def work_options(self, url: str, a: dict[str, Any], b: dict[str, Any], keys: str) -> dict:
        """The options of `url` opened once by two sections whose own keys are `a` and `b`:
        their union; ValueError naming `keys` when both give one option different values."""
        differ = sorted(k for k in a.keys() & b.keys() if a[k] != b[k])
        if differ:
            raise ValueError(
                f"{keys} give {redact(url)} different options ({', '.join(differ)}): a build "
                "opens it once; give its options once, in storage.urls or storage.options"
            )
        return self.for_url(url, _merge(a, b))


def _folder(prefix: str) -> str:
    return prefix if prefix.endswith(("/", "://")) else prefix + "/"


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """`b` over `a`; a mapping in both (client_kwargs, config_kwargs) merged one level down."""
    out = dict(a)
    for k, v in b.items():
        out[k] = {**out[k], **v} if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def options_of(cfg: Any, url: str, own: str = "storage_options") -> dict[str, Any]:
    """The options of `url` read by a stage section `cfg` (its `storage` and its own key)."""
    return dict(cfg.storage.for_url(url, getattr(cfg, own)))


def resolver(cfg: Any, own: str = "storage_options") -> Callable[[str], dict[str, Any]]:
    """`options_of` for any URL `cfg`'s section reads (inputs: each its own)."""
    return lambda url: options_of(cfg, url, own)


def section_store(where: str | Store, cfg: Any) -> Store:
    """`where` itself, or the Store at that URL with the options `cfg`'s section gives it."""
    return where if isinstance(where, Store) else Store.of(where, options_of(cfg, where))
