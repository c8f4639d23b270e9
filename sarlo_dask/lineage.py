"""What each setting does to a build's output: the one place that says which settings go
into a unit's digest.

Every field of a stage's configuration has one role, declared beside it:

- shaping (the default): the unit's bytes depend on it; it is in the stage's digest, so a
  unit made under another value is rebuilt, never reused;
- selection: which inputs a stage takes (native spacing, polarization, size), not what it
  makes of them; out of the digest, applied again on every run to what is reused;
- execution: how the work runs (chunk sizes, device, caches, requests in flight, retries,
  credentials); never in a digest, so changing it on resume rebuilds nothing.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, Field

Role = Literal["shaping", "selection", "execution"]


def execution(default: Any = ..., **kw: Any) -> Any:
    """A pydantic Field that tunes execution only: in no digest."""
    return Field(default, json_schema_extra={"lineage": "execution"}, **kw)


def selection(default: Any = ..., **kw: Any) -> Any:
    """A pydantic Field that selects inputs: in no digest, applied again on every run."""
    return Field(default, json_schema_extra={"lineage": "selection"}, **kw)


def role(model: type[BaseModel], name: str) -> Role:
    """The declared role of one field (shaping unless declared otherwise)."""
    extra = model.model_fields[name].json_schema_extra
    declared = extra.get("lineage") if isinstance(extra, dict) else None
    return declared if declared in ("selection", "execution") else "shaping"  # type: ignore[return-value]


@functools.cache
def roles(model: type[BaseModel]) -> dict[str, Role]:
    """Every field of `model` by its role (once per class: digests are asked per task)."""
    return {name: role(model, name) for name in model.model_fields}


def of_role(cfg: BaseModel, which: Role, unused: Iterable[str] = ()) -> dict[str, Any]:
    """The settings of one role as JSON values, less those `unused` (settings that shape
    nothing under the others, e.g. a DEM's options when there is no DEM)."""
    names = {n for n, r in roles(type(cfg)).items() if r == which} - set(unused)
    return cfg.model_dump(mode="json", include=names)


def digest(record: Any) -> str:
    """16 hex digits of the sha256 of `record` as sorted JSON: what markers compare."""
    text = json.dumps(record, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
