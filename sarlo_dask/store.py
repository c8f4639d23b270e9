"""The stores on any fsspec URL ({work}, {out}): their layout, atomic writes, and completion
markers written last."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import tempfile
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import fsspec


def join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *parts])


def scene_store_url(work: str, scene_id: str) -> str:
    return join(work, "scenes", f"{scene_id}.zarr")


def scene_marker_url(work: str, scene_id: str) -> str:
    return join(work, "scenes", f"{scene_id}.done.json")


def tiles_marker_url(work: str, scene_id: str) -> str:
    return join(work, "tiles", f"{scene_id}.done.json")


def filesystem(url: str, storage_options: dict[str, Any] | None = None) -> tuple[Any, str]:
    """(fs, path) with listing caches off: a store another process just wrote must be seen."""
    options = dict(storage_options or {})
    if url.startswith(("s3://", "s3a://")):
        options.setdefault("use_listings_cache", False)
    fs, path = fsspec.core.url_to_fs(url, **options)
    return fs, path


@functools.lru_cache(maxsize=1)
def _aws_credentials_available() -> bool:
    try:
        import botocore.session

        return botocore.session.get_session().get_credentials() is not None
    except Exception:
        return False


Options = dict[str, Any] | Callable[[str], dict[str, Any]] | None
"""storage options: one set for every URL, or each URL's own (StorageConfig.for_url)"""


def options_at(options: Options, url: str) -> dict[str, Any]:
    """The storage options of `url`."""
    return dict(options(url) if callable(options) else options or {})


def input_options(url: str, storage_options: Options = None) -> dict[str, Any]:
    """Storage options to read an input scene: public S3 buckets (Umbra's open data) are read
    anonymously when no AWS credentials are configured and none are given."""
    options = options_at(storage_options, url)
    given = {"anon", "key", "secret", "token", "profile", "session"} & set(options)
    if url.startswith(("s3://", "s3a://")) and not given and not _aws_credentials_available():
        options["anon"] = True
    return options


def s3_endpoint(storage_options: dict[str, Any] | None = None) -> str:
    """The S3 endpoint a read with these options goes to (for reasons that say where)."""
    options = storage_options or {}
    url = (
        options.get("endpoint_url")
        or (options.get("client_kwargs") or {}).get("endpoint_url")
        or os.environ.get("AWS_ENDPOINT_URL_S3")
        or os.environ.get("AWS_ENDPOINT_URL")
    )
    return f"endpoint {url}" if url else "AWS S3"


def is_local_path(url: str) -> bool:
    """Whether `url` names a local file or folder: a path, or a file:// URL."""
    return "://" not in url or url.startswith("file://")


def canonical(url: str) -> str:
    """One spelling of a file or folder, for keys and digests: a local path (or file:// URL)
    absolute, `~` expanded, symlinks resolved, no trailing slash; other URLs without a
    trailing slash. `optical`, `./optical/`, its absolute path and a link to it are one."""
    if is_local_path(url):
        return os.path.realpath(os.path.expanduser(url.removeprefix("file://")))
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{rest.rstrip('/')}" if rest.strip("/") else url


def canonical_spec(spec: str) -> str:
    """`canonical` of what names a file or folder in a source spec: a path, or the path of
    `folder:PATH` / `geotiff:PATH`; http(s) templates and other kinds' `kind:...` specs
    (naming no file here) as given."""
    for prefix in ("folder:", "geotiff:"):
        if spec.startswith(prefix):
            return prefix + canonical(spec.removeprefix(prefix))
    if is_http(spec) or (re.match(r"[A-Za-z][\w+.-]*:(?!//)", spec) and not os.path.exists(spec)):
        return spec  # a template, or another kind's `kind:...` spec: as given
    return canonical(spec)


def catalogue_root(urls: Sequence[str]) -> str:
    """The deepest folder holding every local file of `urls` ("" when none is local): what
    released metadata names local inputs relative to, so that it names no builder's path."""
    local = [canonical(u) for u in urls if is_local_path(u)]
    return os.path.commonpath([os.path.dirname(u) for u in local]) if local else ""


def portable_url(url: str, root: str) -> str:
    """What released metadata records of input `url`: a local file relative to the
    catalogue `root`; any other URL as given (the caller removes credentials)."""
    if not is_local_path(url):
        return url
    return os.path.relpath(canonical(url), root) if root else os.path.basename(url)


def url_token(url: str) -> str:
    """A short digest of a URL: task keys name the store they write, so that two builds with
    the same settings on one cluster (or a build left running) never share a task."""
    import hashlib

    return hashlib.sha256(url.encode()).hexdigest()[:8]


VERSION_KEYS = ("ETag", "etag", "mtime", "LastModified", "last_modified", "created")
"""what fsspec's file details say a file's version is, by filesystem (S3, local, others)"""


def version_of(info: dict[str, Any]) -> str:
    """A file's size and version from fsspec's details of it: what changes when its bytes do."""
    version = next((str(info[k]) for k in VERSION_KEYS if info.get(k) is not None), "")
    return f"{info.get('size')}:{version}"


def file_version(url: str, storage_options: dict[str, Any] | None = None) -> str:
    """`version_of` a file (one metadata request for a remote one)."""
    fs, path = filesystem(url, storage_options)
    return version_of(fs.info(path))


def exists(url: str, storage_options: dict[str, Any] | None = None) -> bool:
    fs, path = filesystem(url, storage_options)
    fs.invalidate_cache()
    return bool(fs.exists(path))


def is_http(url: str) -> bool:
    """Whether `url` is an http(s) address: one object, whose "?" starts a query."""
    return url.lower().startswith(("http://", "https://"))


def is_local(fs: Any) -> bool:
    """Whether fs is the local file system (where renames are atomic)."""
    protocol = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return bool({"file", "local"} & set(protocol))


PARTIAL = ".partial-"
"""in the names of files being written (local stores): never taken for complete ones"""


def remove_partials(url: str, storage_options: dict[str, Any] | None = None) -> int:
    """Delete what an interrupted run left half-written in a local store; how many.

    Object stores have none: an upload shows only once complete. One build per store at a
    time, so nothing partial is in use."""
    fs, path = filesystem(url, storage_options)
    if not is_local(fs) or not fs.exists(path):
        return 0
    stale = fs.glob(f"{path}/**/*{PARTIAL}*")
    for p in stale:
        fs.rm(p)
    return len(stale)


STAGING = "sarlo-staging"
"""the folder, in this host's temporary folder, of local files staged for an upload"""


def staging_file(name: str) -> tuple[int, str]:
    """(descriptor, path) of a new local file to stage an upload of `name` in: under the
    temporary folder's sarlo-staging/, its name holding this process's id, so that the
    first staging of a later process removes what a killed one left there."""
    return tempfile.mkstemp(prefix=f"{name}{PARTIAL}{os.getpid()}-", dir=_swept_once())


@functools.cache
def _swept_once() -> str:
    """The staging folder, swept on this process's first staging (not on every shard)."""
    return sweep_staging()


def sweep_staging() -> str:
    """Remove the staged files of processes no longer running from this host's staging
    folder (made if missing); its path."""
    folder = os.path.join(tempfile.gettempdir(), STAGING)
    os.makedirs(folder, exist_ok=True)
    for entry in os.scandir(folder):
        pid = entry.name.rpartition(PARTIAL)[2].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            with contextlib.suppress(FileNotFoundError):  # another process swept it
                os.remove(entry.path)
    return folder


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's: alive
        pass
    return True


def write_bytes(url: str, data: bytes, storage_options: dict[str, Any] | None = None) -> None:
    """Write all of `data` or nothing: a reader never sees a partial object.

    Local files go to a temporary name in the same folder, then an atomic rename; object
    stores (S3) publish a PUT only when it is complete.
    """
    fs, path = filesystem(url, storage_options)
    if not is_local(fs):
        with fs.open(path, "wb") as f:
            f.write(data)
        return
    parent = path.rsplit("/", 1)[0]
    if parent:
        fs.makedirs(parent, exist_ok=True)
    tmp = f"{path}{PARTIAL}{uuid.uuid4().hex}"
    try:
        with fs.open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def json_bytes(content: dict[str, Any]) -> bytes:
    """How {work} and {out} write JSON (sorted keys: the same content, the same bytes)."""
    return json.dumps(content, indent=1, sort_keys=True).encode()


def write_json(
    url: str, content: dict[str, Any], storage_options: dict[str, Any] | None = None
) -> None:
    write_bytes(url, json_bytes(content), storage_options)


def update_bytes(url: str, data: bytes, storage_options: dict[str, Any] | None = None) -> bool:
    """`write_bytes`, unless the object already holds exactly `data` (a resumed run that
    changes nothing rewrites nothing); whether it wrote."""
    fs, path = filesystem(url, storage_options)
    if fs.exists(path) and fs.size(path) == len(data) and fs.cat_file(path) == data:
        return False
    write_bytes(url, data, storage_options)
    return True


def update_json(
    url: str, content: dict[str, Any], storage_options: dict[str, Any] | None = None
) -> bool:
    """`write_json` unless the object already holds the same JSON; whether it wrote."""
    return update_bytes(url, json_bytes(content), storage_options)


def read_json(url: str, storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    fs, path = filesystem(url, storage_options)
    with fs.open(path, "rb") as f:
        return dict(json.loads(f.read()))


def remove(url: str, storage_options: dict[str, Any] | None = None) -> None:
    fs, path = filesystem(url, storage_options)
    if fs.exists(path):
        fs.rm(path, recursive=True)


@dataclass(frozen=True, eq=False)
class Store:
    """{work} or {out} on any fsspec URL: its root and storage options, named here once, and
    every path and marker of its layout (as pangeo-forge's FSSpecTarget). Stages and tasks
    take a Store, never a URL and options apart; its I/O takes URLs under the root."""

    url: str
    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, store: str | Store, options: dict[str, Any] | None = None) -> Store:
        """`store` itself, or a Store at the URL `store` with `options`."""
        return store if isinstance(store, Store) else cls(store.rstrip("/"), dict(options or {}))

    @functools.cached_property
    def token(self) -> str:
        """A short digest of the URL (any spelling of it), for task keys (see url_token);
        worked out once per Store (keys are made for every task of a stage)."""
        return url_token(canonical(self.url))

    def path(self, *parts: str) -> str:
        return join(self.url, *parts)

    # {work}: scenes/{id}.zarr and .done.json, tiles/{id}/, tiles/{id}.done.json,
    # captions/{id}/{key}.json, failures.jsonl
    def scene_store(self, scene_id: str) -> str:
        return scene_store_url(self.url, scene_id)

    def scene_marker(self, scene_id: str) -> str:
        return scene_marker_url(self.url, scene_id)

    def tiles_marker(self, scene_id: str) -> str:
        return tiles_marker_url(self.url, scene_id)

    def tile_dir(self, scene_id: str) -> str:
        return join(self.url, "tiles", scene_id)

    def tile_member(self, scene_id: str, key: str, member: str) -> str:
        """A member of tile `key`: sar.npy, meta.json, ..."""
        return join(self.url, "tiles", scene_id, f"{key}.{member}")

    def captions_dir(self, scene_id: str) -> str:
        return join(self.url, "captions", scene_id)

    def caption(self, scene_id: str, key: str) -> str:
        return join(self.url, "captions", scene_id, f"{key}.json")

    def xyz_cache(self) -> str:
        """The build's XYZ tile cache when tiles.tile_cache does not name one."""
        return join(self.url, "xyz-cache")

    # I/O of small objects under the root
    def filesystem(self, url: str | None = None) -> tuple[Any, str]:
        return filesystem(url or self.url, self.options)

    def exists(self, url: str) -> bool:
        return exists(url, self.options)

    def read_json(self, url: str) -> dict[str, Any]:
        return read_json(url, self.options)

    def write_bytes(self, url: str, data: bytes) -> None:
        write_bytes(url, data, self.options)

    def write_json(self, url: str, content: dict[str, Any]) -> None:
        write_json(url, content, self.options)

    def update_bytes(self, url: str, data: bytes) -> bool:
        return update_bytes(url, data, self.options)

    def update_json(self, url: str, content: dict[str, Any]) -> bool:
        return update_json(url, content, self.options)

    def remove(self, url: str) -> None:
        remove(url, self.options)

    def remove_partials(self) -> int:
        return remove_partials(self.url, self.options)
