"""Read a released dataset: WebDataset shards {url}/{split}/chunk_NNN/shard-NNNNN.tar.

Only committed shards are read (those whose `.done.json` marker exists beside them; over
HTTP, those manifest.json lists), so a release still being written is never read half-way.
`open` streams samples with webdataset (usable in a PyTorch DataLoader); `iter_meta` reads
just the meta.json members.
"""

from __future__ import annotations

import functools
import json
import tarfile
from collections.abc import Iterator
from typing import Any

from sarlo_dask.store import filesystem, join

SPLITS = ("train", "validation", "test")


def meta_schema() -> dict[str, Any]:
    """The JSON Schema of a sample's meta.json (sarlo_dask/schemas/meta.schema.json): each
    field documented; validate with any JSON Schema 2020-12 validator."""
    from importlib.resources import files

    return dict(json.loads(files("sarlo_dask.schemas").joinpath("meta.schema.json").read_text()))


def shard_marker(shard_url: str) -> str:
    return shard_url[: -len(".tar")] + ".done.json"


def shard_urls(
    url: str, split: str | None = None, storage_options: dict[str, Any] | None = None
) -> list[str]:
    """Committed shards of one split (or all), in release order: split, chunk, shard. Over
    HTTP(S), which cannot list a folder, the shards that manifest.json lists."""
    fs, root = filesystem(url, storage_options)
    if url.startswith(("http://", "https://")):
        return _published_shards(url, fs, split)
    fs.invalidate_cache()
    protocol = url.split("://", 1)[0] + "://" if "://" in url else ""
    out = []
    for s in [split] if split else SPLITS:
        found = sorted(fs.glob(f"{root}/{s}/chunk_*/shard-*.tar"))
        markers = set(fs.glob(f"{root}/{s}/chunk_*/shard-*.done.json"))
        out += [protocol + p for p in found if shard_marker(p) in markers]
    return out


def _published_shards(url: str, fs: Any, split: str | None) -> list[str]:
    """The shards manifest.json lists (each committed before the manifest was written)."""
    where = join(url, "manifest.json")
    try:
        with fs.open(where, "rb") as f:
            listed = [s["shard"] for s in json.load(f)["shards"]]
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{where}: not found; a release served over HTTP is read through its manifest, "
            "which the release stage writes when it ends"
        ) from None
    order = {s: i for i, s in enumerate(SPLITS)}
    ours = [p for p in listed if split is None or p.split("/", 1)[0] == split]
    return [join(url, p) for p in sorted(ours, key=lambda p: (order[p.split("/", 1)[0]], p))]


def iter_meta(
    url: str, split: str | None = None, storage_options: dict[str, Any] | None = None
) -> Iterator[dict[str, Any]]:
    """The meta.json of every sample of the committed shards, in release order."""
    for shard in shard_urls(url, split, storage_options):
        fs, path = filesystem(shard, storage_options)
        with fs.open(path, "rb") as f, tarfile.open(fileobj=f, mode="r|") as tar:
            for member in tar:
                if member.name.endswith(".meta.json"):
                    data = tar.extractfile(member)
                    assert data is not None
                    yield json.loads(data.read())


def index(url: str, storage_options: dict[str, Any] | None = None) -> Any:
    """{url}/index.parquet as a pyarrow Table: one row per sample (GeoParquet; see
    sarlo_dask.index); `.to_pandas()`, DuckDB and GeoPandas take it as it is."""
    import pyarrow.parquet as pq

    fs, path = filesystem(join(url, "index.parquet"), storage_options)
    with fs.open(path, "rb") as f:
        return pq.read_table(f)


def open(  # noqa: A001 - the dataset's entry point, as webdataset / xarray name theirs
    url: str,
    split: str = "train",
    storage_options: dict[str, Any] | None = None,
    decode: bool = True,
    where: Any = None,
    batch_size: int | None = None,
) -> Any:
    """A webdataset pipeline over one split's committed shards: dicts with `__key__`,
    `sar.npy` (complex64 array), `sar.png` (bytes), `meta.json` (dict), `sicd.xml` (str).

    Shards open through fsspec (storage options stay out of URLs and logs) and are split
    over DataLoader workers and nodes, so it feeds a PyTorch DataLoader directly. `where`, a
    pyarrow compute expression over index.parquet's columns (e.g. `pc.field("polarization")
    == "V:V"`), keeps the samples that match and reads only their bytes (one range request
    per sample, at the offsets the index records).
    `batch_size`: batches made by `collate`, for `DataLoader(ds, batch_size=None)`.
    """
    import webdataset as wds
    from webdataset import tariterators

    urls = shard_urls(url, split, storage_options)
    if not urls:
        raise FileNotFoundError(f"{join(url, split)}: no committed shards")
    if where is None:

        def opened(src: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
            for item in src:
                fs, path = filesystem(item["url"], storage_options)
                with fs.open(path, "rb") as f:
                    yield {"url": item["url"], "stream": f}

        source = [wds.SimpleShardList(urls)]
        expand = [opened, tariterators.tar_file_expander, tariterators.group_by_keys]
    else:  # the matching samples only: one range request each, from the index's offsets
        import pyarrow.compute as pc

        rows = index(url, storage_options).filter(where & (pc.field("split") == split))
        committed = {"/".join(u.rsplit("/", 3)[1:]): u for u in urls}
        items = [
            {"url": committed[r["shard"]], "key": r["key"], "members": r["members"]}
            for r in rows.select(["key", "shard", "members"]).to_pylist()
            if r["shard"] in committed
        ]
        source = [functools.partial(iter, items)]  # a callable: a list would be taken as stages
        expand = [functools.partial(_sample_ranges, storage_options=storage_options)]
    stages = [*source, wds.split_by_node, wds.split_by_worker, *expand]
    if decode:
        stages.append(wds.decode())
    if batch_size:
        stages.append(wds.batched(batch_size, collation_fn=collate, partial=True))
    return wds.DataPipeline(*stages)


def _sample_ranges(
    src: Iterator[dict[str, Any]], storage_options: dict[str, Any] | None
) -> Iterator[dict[str, Any]]:
    """Samples read by byte range: for each item (a shard URL, a key and its members'
    offsets and sizes) the bytes from its first member to its last, in one request."""
    for item in src:
        fs, path = filesystem(item["url"], storage_options)
        first = min(m["offset"] for m in item["members"])
        last = max(m["offset"] + m["size"] for m in item["members"])
        blob = fs.cat_file(path, start=first, end=last)
        sample = {"__key__": item["key"], "__url__": item["url"]}
        for m in item["members"]:
            sample[m["name"]] = blob[m["offset"] - first : m["offset"] - first + m["size"]]
        yield sample


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """A batch of samples: arrays of one shape stacked (sar.npy: (n, 1024, 1024) complex64,
    exact), everything else (keys, meta.json dicts with their nulls, bytes) as lists."""
    import numpy as np

    out: dict[str, Any] = {}
    for name in samples[0]:
        values = [s.get(name) for s in samples]
        arrays = [v for v in values if isinstance(v, np.ndarray)]
        same = len(arrays) == len(values) and len({(a.shape, a.dtype) for a in arrays}) == 1
        out[name] = np.stack(arrays) if same else values
    return out


def hf_data_files(url: str, storage_options: dict[str, Any] | None = None) -> dict[str, list]:
    """`data_files` for Hugging Face `datasets`: each split's committed shards (a release
    without any is a FileNotFoundError here, not an empty `data_files` later)."""
    found = {s: shard_urls(url, s, storage_options) for s in SPLITS}
    files = {s: urls for s, urls in found.items() if urls}
    if not files:
        raise FileNotFoundError(f"{url}: no committed shards (is this a build's --out folder?)")
    return files


def hf_features(
    release: str | None = None,
    storage_options: dict[str, Any] | None = None,
    preview: str = "png",
    optical: bool = False,
) -> Any:
    """The release's `datasets.Features`, for reading it with Hugging Face `datasets`:

        load_dataset("webdataset", data_files=hf_data_files(url), streaming=True,
                     features=hf_features(url))

    With `release`, one feature per member its samples hold (from index.parquet: optic.png
    where the build shipped it, the preview's format); without, the default members
    (`preview`, `optical`). `datasets` drops a member its features do not name.
    Streaming only: Arrow has no complex type, so `sar.npy` comes through as the complex64
    array only when examples are not written to Arrow. meta.json arrives as a dict, its
    floats rounded to 10 decimals by `datasets.Json` (`open` gives them exactly); sicd.xml
    as bytes.
    """
    import datasets

    if release is not None:
        rows = index(release, storage_options).column("members").to_pylist()
        names = sorted({m["name"] for members in rows for m in members})
    else:
        names = ["meta.json", "sar.npy", f"sar.{preview}", "sicd.xml"] + ["optic.png"] * optical
    kinds = {"json": datasets.Json(), "png": datasets.Image(), "jpg": datasets.Image()}
    fields: dict[str, Any] = {
        n: kinds.get(n.rsplit(".", 1)[-1], datasets.Value("binary")) for n in names
    }
    fields["__key__"] = datasets.Value("string")
    fields["__url__"] = datasets.Value("string")
    return datasets.Features(fields)
