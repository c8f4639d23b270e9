"""Find scenes: files, folders, globs and fsspec prefixes (s3:// included), in a stable order."""

from __future__ import annotations

from collections.abc import Iterable

import fsspec

from sarlo_dask.errors import redact
from sarlo_dask.io.readers import scene_suffixes
from sarlo_dask.store import Options, input_options, is_http

LIST_SUFFIXES = (".txt", ".list")


def expand_inputs(inputs: Iterable[str], storage_options: Options = None) -> list[str]:
    """Scene URLs from INPUT arguments: a folder or prefix yields its *.nitf / *.ntf files, a
    list file (*.txt / *.list) the inputs it names one per line (# starts a comment).

    A folder or glob without any scene is a ValueError (an input is never dropped silently).
    """
    urls: list[str] = []
    for item in inputs:
        options = input_options(item, storage_options)
        if item.lower().endswith(LIST_SUFFIXES):
            with fsspec.open(item, "rt", **options) as f:
                lines = [ln.split("#", 1)[0].strip() for ln in f]
            urls.extend(expand_inputs([ln for ln in lines if ln], storage_options))
            continue
        if is_http(item):
            urls.append(item)  # one object; "?" starts its query, not a glob
            continue
        fs, path = fsspec.core.url_to_fs(item, **options)
        protocol = item.split("://", 1)[0] + "://" if "://" in item else ""
        if any(ch in path for ch in "*?["):
            found = sorted(fs.glob(path))
        elif fs.isdir(path):
            ends = scene_suffixes()  # the NITF's and those other scene readers claim
            found = sorted(p for p in fs.find(path) if p.lower().endswith(ends))
        else:
            urls.append(item)
            continue
        if not found:
            kinds = " / ".join(f"*{e}" for e in scene_suffixes())
            raise ValueError(f"input {redact(item)}: no scene matches (no {kinds} file)")
        urls.extend(protocol + p if protocol else p for p in found)
    return urls
