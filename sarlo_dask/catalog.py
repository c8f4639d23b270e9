"""Find scenes: files, folders, globs and fsspec prefixes (s3:// included), in a stable order."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import fsspec

SCENE_SUFFIXES = (".nitf", ".ntf")


def expand_inputs(
    inputs: Iterable[str], storage_options: dict[str, Any] | None = None
) -> list[str]:
    """Scene URLs from INPUT arguments; a folder or prefix yields its *.nitf / *.ntf files."""
    urls: list[str] = []
    for item in inputs:
        fs, path = fsspec.core.url_to_fs(item, **(storage_options or {}))
        protocol = item.split("://", 1)[0] + "://" if "://" in item else ""
        if any(ch in path for ch in "*?["):
            found = sorted(fs.glob(path))
        elif fs.isdir(path):
            found = sorted(p for p in fs.find(path) if p.lower().endswith(SCENE_SUFFIXES))
        else:
            urls.append(item)
            continue
        urls.extend(protocol + p if protocol else p for p in found)
    return urls
