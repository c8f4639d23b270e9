"""Read a released dataset: WebDataset shards {url}/{generation}/{split}/chunk_NNN/shard-NNNNN.tar.

{url}/manifest.json names the current generation (the folder of the release it describes,
sarlo_dask.io.generations) and lists its shards with their sha256: only those are read, so a
release being written beside it is never seen. The readers check each shard's sha256 while
they stream it and raise ShardError naming the shard when it differs (`verify=False`: no
check). A folder without a manifest is read as releases were before generations: the
shards whose `.done.json` marker exists beside them. `open` streams samples with webdataset
(usable in a PyTorch DataLoader); `iter_meta` reads just the meta.json members.
"""

from __future__ import annotations

import functools
import hashlib
import json
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from sarlo_dask.store import filesystem, is_http, join

SPLITS = ("train", "validation", "test")
MANIFEST = "manifest.json"


class ShardError(OSError):
    """A shard whose bytes are not the ones its manifest lists (damaged or replaced)."""


def meta_schema() -> dict[str, Any]:
    """The JSON Schema of a sample's meta.json (sarlo_dask/schemas/meta.schema.json): each
    field documented; validate with any JSON Schema 2020-12 validator."""
    from importlib.resources import files

    return dict(json.loads(files("sarlo_dask.schemas").joinpath("meta.schema.json").read_text()))


def shard_marker(shard_url: str) -> str:
    return shard_url[: -len(".tar")] + ".done.json"


def read_manifest(url: str, storage_options: dict[str, Any] | None = None) -> dict | None:
    """{url}/manifest.json (None: there is none, so no release has been published there)."""
    fs, path = filesystem(join(url, MANIFEST), storage_options)
    try:
        with fs.open(path, "rb") as f:
            return dict(json.loads(f.read()))
    except FileNotFoundError:
        return None


def root_of(url: str, manifest: dict | None) -> str:
    """The folder of the release `manifest` describes: its generation's, or `url` itself for
    a release written before generations."""
    generation = (manifest or {}).get("generation")
    return join(url, generation) if generation else url.rstrip("/")


def release_root(url: str, storage_options: dict[str, Any] | None = None) -> str:
    """The folder holding the current release's shards, index.parquet and stats.json."""
    return root_of(url, read_manifest(url, storage_options))


@dataclass(frozen=True)
class Shard:
    """A committed shard: its URL, its split and, when a manifest lists it, its sha256 and
    size."""

    url: str
    split: str
    sha256: str | None = None
    bytes: int | None = None


def shards(
    url: str, split: str | None = None, storage_options: dict[str, Any] | None = None
) -> list[Shard]:
    """The current release's shards of one split (or all), in release order: split, chunk,
    shard. Those manifest.json lists; without one (a release from before generations),
    the shards committed beside their markers (over HTTP, which cannot list: none)."""
    manifest = read_manifest(url, storage_options)
    if manifest is not None:
        root, order = root_of(url, manifest), {s: i for i, s in enumerate(SPLITS)}
        listed = [s for s in manifest["shards"] if split in (None, s["shard"].split("/", 1)[0])]
        listed.sort(key=lambda s: (order[s["shard"].split("/", 1)[0]], s["shard"]))
        return [
            Shard(join(root, s["shard"]), s["shard"].split("/", 1)[0], s["sha256"], s["bytes"])
            for s in listed
        ]
    if is_http(url):
        raise FileNotFoundError(
            f"{join(url, MANIFEST)}: not found; a release served over HTTP is read through "
            "its manifest, which the release stage writes when it ends"
        )
    fs, root = filesystem(url, storage_options)
    fs.invalidate_cache()
    protocol = url.split("://", 1)[0] + "://" if "://" in url else ""
    out = []
    for s in [split] if split else SPLITS:
        found = sorted(fs.glob(f"{root}/{s}/chunk_*/shard-*.tar"))
        markers = set(fs.glob(f"{root}/{s}/chunk_*/shard-*.done.json"))
        out += [Shard(protocol + p, s) for p in found if shard_marker(p) in markers]
    return out


def shard_urls(
    url: str, split: str | None = None, storage_options: dict[str, Any] | None = None
) -> list[str]:
    """The URLs of `shards`."""
    return [s.url for s in shards(url, split, storage_options)]


class _Checked:
    """A shard's stream that hashes what is read; `check()` reads the rest and raises
    ShardError when the bytes are not the shard's listed ones."""

    def __init__(self, f: BinaryIO, shard: Shard) -> None:
        self.f, self.shard, self.size = f, shard, 0
        self._sha = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        self._sha.update(data)
        self.size += len(data)
        return data

    def check(self) -> None:
        while self.read(1 << 20):
            pass
        want, got = self.shard.sha256, self._sha.hexdigest()
        if want is not None and (got != want or self.size != self.shard.bytes):
            raise ShardError(
                f"{self.shard.url}: {self.size} bytes of sha256 {got[:16]}..., the manifest "
                f"lists {self.shard.bytes} bytes of sha256 {want[:16]}... (a damaged shard: "
                "`sarlo verify` lists every damaged file, the same `sarlo build` repairs them)"
            )


def _streams(
    items: Iterator[dict[str, Any]], listed: dict[str, Shard], storage_options: Any, verify: bool
) -> Iterator[dict[str, Any]]:
    """webdataset's url -> stream stage: each shard opened, its sha256 checked once it is
    read to its end (so the error comes after the samples read from it, before the next)."""
    for item in items:
        shard = listed[item["url"]]
        fs, path = filesystem(shard.url, storage_options)
        with fs.open(path, "rb") as f:
            stream = _Checked(f, shard)
            yield {"url": shard.url, "stream": stream}
            if verify:
                stream.check()


def iter_meta(
    url: str,
    split: str | None = None,
    storage_options: dict[str, Any] | None = None,
    verify: bool = True,
) -> Iterator[dict[str, Any]]:
    """The meta.json of every sample of the current release, in release order (each shard's
    sha256 checked once it is read, unless `verify` is False)."""
    for shard in shards(url, split, storage_options):
        fs, path = filesystem(shard.url, storage_options)
        with fs.open(path, "rb") as f:
            stream = _Checked(f, shard)
            with tarfile.open(fileobj=stream, mode="r|") as tar:  # type: ignore[call-overload]
                for member in tar:
                    if member.name.endswith(".meta.json"):
                        data = tar.extractfile(member)
                        assert data is not None
                        yield json.loads(data.read())
            if verify:
                stream.check()


def index(url: str, storage_options: dict[str, Any] | None = None) -> Any:
    """The current release's index.parquet as a pyarrow Table: one row per sample (GeoParquet; see
    sarlo_dask.io.index); `.to_pandas()`, DuckDB and GeoPandas take it as it is."""
    import pyarrow.parquet as pq

    fs, path = filesystem(
        join(release_root(url, storage_options), "index.parquet"), storage_options
    )
    with fs.open(path, "rb") as f:
        return pq.read_table(f)


def open(  # noqa: A001 - the dataset's entry point, as webdataset / xarray name theirs
    url: str,
    split: str = "train",
    storage_options: dict[str, Any] | None = None,
    decode: bool = True,
    where: Any = None,
    batch_size: int | None = None,
    verify: bool = True,
) -> Any:
    """A webdataset pipeline over one split of the current release: dicts with `__key__`,
    `sar.npy` (complex64 array), `sar.png` (bytes), `meta.json` (dict), `sicd.xml` (str).

    Shards open through fsspec (storage options stay out of URLs and logs) and are split
    over DataLoader workers and nodes, so it feeds a PyTorch DataLoader directly. Each
    shard's sha256 is checked as it streams: a shard that is not the manifest's raises
    ShardError naming it (`verify=False`: not checked). `where`, a pyarrow compute
    expression over index.parquet's columns (e.g. `pc.field("polarization") == "V:V"`),
    keeps the samples that match and reads only their bytes (one range request per sample,
    at the offsets the index records; each member checked against the sha256 it records).
    `batch_size`: batches made by `collate`, for `DataLoader(ds, batch_size=None)`.
    """
    import webdataset as wds
    from webdataset import tariterators

    found = shards(url, split, storage_options)
    if not found:
        raise FileNotFoundError(f"{join(url, split)}: no committed shards")
    urls = [s.url for s in found]
    if where is None:
        listed = {s.url: s for s in found}
        source = [wds.SimpleShardList(urls)]
        opened = functools.partial(
            _streams, listed=listed, storage_options=storage_options, verify=verify
        )
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
        expand = [functools.partial(sample_ranges, storage_options=storage_options, verify=verify)]
    stages = [*source, wds.split_by_node, wds.split_by_worker, *expand]
    if decode:
        stages.append(wds.decode())
    if batch_size:
        stages.append(wds.batched(batch_size, collation_fn=collate, partial=True))
    return wds.DataPipeline(*stages)


def sample_ranges(
    src: Iterator[dict[str, Any]], storage_options: dict[str, Any] | None, verify: bool = True
) -> Iterator[dict[str, Any]]:
    """Samples read by byte range: for each item (a shard URL, a key and its members'
    offsets, sizes and sha256) the bytes from its first member to its last, in one request;
    a member whose bytes are not those the index records raises ShardError."""
    for item in src:
        fs, path = filesystem(item["url"], storage_options)
        first = min(m["offset"] for m in item["members"])
        last = max(m["offset"] + m["size"] for m in item["members"])
        blob = fs.cat_file(path, start=first, end=last)
        sample = {"__key__": item["key"], "__url__": item["url"]}
        for m in item["members"]:
            data = blob[m["offset"] - first : m["offset"] - first + m["size"]]
            if verify and hashlib.sha256(data).hexdigest() != m["sha256"]:
                raise ShardError(
                    f"{item['url']}: member {item['key']}.{m['name']} is not the one "
                    "index.parquet records (sha256; a damaged shard: `sarlo verify` lists "
                    "every damaged file, the same `sarlo build` repairs them)"
                )
            sample[m["name"]] = data
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


def hf_data_files(
    url: str, storage_options: dict[str, Any] | None = None, verify: bool = True
) -> dict[str, list]:
    """`data_files` for Hugging Face `datasets`: each split's committed shards (a release
    without any is a FileNotFoundError here, not an empty `data_files` later). `datasets`
    reads them unchecked, so each shard's size and sha256 are checked here first (one read
    of the release, in threads): ShardError names a shard that is not the manifest's."""
    found = shards(url, None, storage_options)  # in release order: split by split
    files: dict[str, list] = {}
    for shard in found:
        files.setdefault(shard.split, []).append(shard.url)
    if not files:
        raise FileNotFoundError(f"{url}: no committed shards (is this a build's --out folder?)")
    if verify:
        from concurrent.futures import ThreadPoolExecutor

        def check(shard: Shard) -> None:
            fs, path = filesystem(shard.url, storage_options)
            with fs.open(path, "rb") as f:
                _Checked(f, shard).check()

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(check, found))
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
    kinds = {"json": datasets.Json(), "image": datasets.Image()}
    fields: dict[str, Any] = {n: kinds.get(hf_dtype(n), datasets.Value("binary")) for n in names}
    fields["__key__"] = datasets.Value("string")
    fields["__url__"] = datasets.Value("string")
    return datasets.Features(fields)


def hf_dtype(member: str) -> str:
    """The Hugging Face `datasets` type of a sample member, by its ending: json (meta.json),
    image (png, jpg previews), else binary (sar.npy: Arrow has no complex type; sicd.xml)."""
    return {"json": "json", "png": "image", "jpg": "image"}.get(member.rsplit(".", 1)[-1], "binary")
