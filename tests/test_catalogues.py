"""The `stac` and `croissant` sample writers on a built release, judged by the field's own
tools: pystac reads the Collection and every Item, its validator passes them offline (the
core schemas and the sar, sat, view and file extensions' schemas that pystac ships), its
extension classes read the fields back, and the stac-geoparquet table round-trips to the same
Items; `mlcroissant validate` passes croissant.json and mlcroissant's loader yields every
sample with its files where their checksums say; Hugging Face `datasets` reads every sample
through the dataset card's configs."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest

from sarlo_dask.build_config import BuildConfig
from sarlo_dask.io.stac import EXTENSIONS
from sarlo_dask.pipeline import build_dataset

from .helpers import build_configs

SHIPPED = {EXTENSIONS[k] for k in ("sar", "sat", "view", "file")}
"""the extension schemas pystac holds locally (its pystac-ext-* packages)"""


@pytest.fixture(scope="module")
def stac_release(release_setup, release_built, client, tmp_path_factory):
    """The reference release built again with `writers: [stac, croissant, card]`: its
    generation and manifest."""
    root, urls, config = release_setup
    tmp = tmp_path_factory.mktemp("stac")
    work, out = tmp / "work", tmp / "out"
    shutil.copytree(root / "work", work)
    shutil.copytree(release_built[0], out)
    scfg, tcfg, ccfg, rcfg = build_configs(config).stages()
    build = BuildConfig.of(
        scfg,
        tcfg,
        ccfg,
        rcfg.model_copy(
            update={
                "writers": ["stac", "croissant", "card"],
                "licence": "CC-BY-4.0",
                "include_optical": True,
                "optical_licence": "CC0-1.0",
            }
        ),
    )
    result = build_dataset(urls, str(work), str(out), build, client)
    assert result.exit_code() == 0, result.release
    manifest = json.loads((out / "manifest.json").read_text())
    return out / manifest["generation"], manifest


def test_pystac_reads_and_validates_the_collection_and_every_item(stac_release):
    import pystac
    from pystac.extensions.file import FileExtension
    from pystac.extensions.sar import FrequencyBand, ObservationDirection, SarExtension
    from pystac.extensions.sat import OrbitState, SatExtension
    from pystac.extensions.view import ViewExtension
    from pystac.validation import validate_dict

    gen, manifest = stac_release
    collection = pystac.Collection.from_file(str(gen / "stac" / "collection.json"))
    validate_dict(collection.to_dict(), href=str(gen / "stac" / "collection.json"))
    items = list(collection.get_items())
    assert len(items) == manifest["samples"] > 0
    assert {f["writer"] for f in manifest["files"]} == {"stac", "croissant", "card"}
    listed = {f["path"]: f for f in manifest["files"]}
    for item in items:
        data = item.to_dict(include_self_link=False)
        # offline: the schemas pystac ships; processing and ml-aoi have none in pystac, and
        # their fields are held to their published rules below
        data["stac_extensions"] = [e for e in data["stac_extensions"] if e in SHIPPED]
        validate_dict(data)
        assert set(item.stac_extensions) == set(EXTENSIONS.values())
        sar = SarExtension.ext(item)
        assert sar.frequency_band == FrequencyBand.X and sar.polarizations
        assert sar.observation_direction == ObservationDirection.RIGHT
        assert sar.looks_range == sar.looks_azimuth == 1
        assert 0.9 < sar.looks_equivalent_number < 1.1  # single-look speckle: meta's ENL
        assert abs(sar.pixel_spacing_range - 0.8) < 0.05
        assert SatExtension.ext(item).orbit_state in (OrbitState.ASCENDING, OrbitState.DESCENDING)
        assert 0 < ViewExtension.ext(item).incidence_angle < 90
        props = item.properties
        assert props["ml-aoi:split"] in ("train", "validate", "test")
        assert {"train": "train", "validation": "validate", "test": "test"}[
            props["sarlo:split"]
        ] == props["ml-aoi:split"]
        assert isinstance(props["processing:level"], str)
        assert all(isinstance(v, str) for v in props["processing:software"].values())
        # the shard asset is the file it names: its size and sha256 multihash, and each
        # member's bytes where the asset says they lie
        asset = item.assets["shard"]
        shard = (gen / "stac" / "items" / asset.href).resolve()
        blob = shard.read_bytes()
        file_ext = FileExtension.ext(asset)
        assert file_ext.size == len(blob)
        assert file_ext.checksum == "1220" + hashlib.sha256(blob).hexdigest()
        for m in asset.extra_fields["sarlo:members"]:
            part = blob[m["offset"] : m["offset"] + m["size"]]
            assert hashlib.sha256(part).hexdigest() == m["sha256"], (item.id, m["name"])
        assert f"stac/items/{item.id}.json" in listed
    # the validator judges: a band the sar extension does not name is refused, offline
    bad = items[0].to_dict(include_self_link=False)
    bad["stac_extensions"] = sorted(SHIPPED)
    bad["properties"]["sar:frequency_band"] = "Q"
    with pytest.raises(pystac.errors.STACValidationError, match="sar/v1.0.0"):
        validate_dict(bad)


def test_the_stac_geoparquet_table_round_trips_to_the_items(stac_release):
    import pyarrow.parquet as pq
    from stac_geoparquet.arrow import stac_table_to_items

    gen, manifest = stac_release
    table = pq.read_table(gen / "stac" / "items.parquet")
    assert table.num_rows == manifest["samples"]
    back = {i["id"]: i for i in stac_table_to_items(table)}
    for path in sorted((gen / "stac" / "items").glob("*.json")):
        item = json.loads(path.read_text())
        got = back[item["id"]]
        assert got["geometry"]["type"] == "Polygon"
        assert got["bbox"] == pytest.approx(item["bbox"])
        for key, value in item["properties"].items():
            have = got["properties"][key]
            if key == "datetime":  # stac-geoparquet writes timestamps as it parses them
                assert have.replace("+00:00", "Z").startswith(value[:19]), (have, value)
            else:
                assert have == value, key
        assert got["assets"]["shard"]["file:checksum"] == item["assets"]["shard"]["file:checksum"]


def test_the_stac_files_are_the_same_bytes_when_rendered_again(stac_release):
    """Deterministic: the writer renders the released index and shards to the same bytes."""
    import pyarrow.parquet as pq

    from sarlo_dask.dataset import shard_marker
    from sarlo_dask.io.index import INDEX
    from sarlo_dask.io.stac import StacWriter
    from sarlo_dask.io.writers import ReleaseView

    gen, manifest = stac_release
    rows = pq.read_table(gen / INDEX).to_pylist()
    for r in rows:  # the index holds the time as a timestamp, meta.json as its text
        r["collect_start"] = r["collect_start"].strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    markers = {
        p.relative_to(gen).as_posix(): json.loads(open(shard_marker(str(p))).read())
        for p in gen.rglob("*.tar")
    }
    files = StacWriter().files(ReleaseView(rows, markers, manifest))
    assert len(files) == manifest["samples"] + 2
    for name, data in files.items():
        assert (gen / name).read_bytes() == data, name


def test_mlcroissant_validates_and_loads_every_sample(stac_release):
    import subprocess
    import sys
    from pathlib import Path

    import mlcroissant as mlc
    import pyarrow.parquet as pq

    gen, manifest = stac_release
    doc = gen / "croissant.json"
    cli = Path(sys.executable).parent / "mlcroissant"
    res = subprocess.run(
        [str(cli), "validate", "--jsonld", str(doc)], capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "not standard" not in res.stderr, res.stderr  # the specification's @context
    records = list(mlc.Dataset(jsonld=str(doc)).records("samples"))
    assert len(records) == manifest["samples"]
    keys = sorted(pq.read_table(gen / "index.parquet").column("key").to_pylist())
    assert sorted(r["samples/key"].decode() for r in records) == keys
    described = json.loads(doc.read_text())["distribution"]
    for f in (d for d in described if d["@type"] == "cr:FileObject"):  # every file's sha256
        assert hashlib.sha256((gen / f["contentUrl"]).read_bytes()).hexdigest() == f["sha256"]
    blobs: dict[str, bytes] = {}
    for r in records:  # each record's files lie in its shard where it says
        shard = r["samples/shard"].decode()
        blob = blobs.setdefault(shard, (gen / shard).read_bytes())
        names = set()
        for m in r["samples/members"]:
            at, size = m["samples/members/offset"], m["samples/members/size"]
            digest = hashlib.sha256(blob[at : at + size]).hexdigest()
            assert digest == m["samples/members/sha256"].decode()
            names.add(m["samples/members/name"].decode())
        assert {"sar.npy", "sicd.xml", "meta.json"} <= names


def test_datasets_reads_every_sample_through_the_cards_configs(stac_release):
    """`load_dataset(FOLDER, split)` as the card says: its YAML config names each split's
    shards and the members' features; every sample of every split arrives, its complex
    tile equal to what sarlo_dask.dataset.open gives."""
    import numpy as np
    import yaml

    from sarlo_dask import dataset

    datasets = pytest.importorskip("datasets")
    gen, manifest = stac_release
    text = (gen / "README.md").read_text()
    header = yaml.safe_load(text.split("---\n")[1])
    assert header["license"] and header["configs"][0]["data_files"]
    assert "## Citation" in text and "SARLO-80" in text and manifest["plan"] in text
    seen = 0
    for split in manifest["splits"]:
        hf = datasets.load_dataset(str(gen), split=split, streaming=True)
        ours = {s["__key__"]: s for s in dataset.open(str(gen.parent), split)}
        got = {s["__key__"]: s for s in hf}
        assert set(got) == set(ours), split
        for key, sample in got.items():
            tile = sample["sar.npy"]
            assert tile.dtype == np.complex64 and np.array_equal(tile, ours[key]["sar.npy"])
            assert sample["meta.json"]["key"] == key
        seen += len(got)
    assert seen == manifest["samples"]


def test_the_card_states_the_licences_and_shows_samples(stac_release):
    """The card's header and croissant.json carry the release's licence; the card names the
        optical source's; its figure is the first two samples of each split by key, each panel
        their shipped preview (and optical view) resized (within 3 grey levels on average of PIL's
    Lanczos resize of the full image: speckle differs pixel to pixel, so this is a match), and
    the card shows it."""
    import io

    import numpy as np
    import yaml
    from PIL import Image

    from sarlo_dask import dataset
    from sarlo_dask.io.card import PANEL

    gen, manifest = stac_release
    text = (gen / "README.md").read_text()
    assert yaml.safe_load(text.split("---\n")[1])["license"] == "cc-by-4.0"
    assert "licensed CC-BY-4.0" in text and "optical source's licence: CC0-1.0" in text
    croissant = json.loads((gen / "croissant.json").read_text())
    assert croissant["license"] == "https://spdx.org/licenses/CC-BY-4.0.html"
    assert "![" in text and "(figures/samples.png)" in text
    figure = np.asarray(Image.open(gen / "figures" / "samples.png"))
    i = 0
    for split in ("train", "validation", "test"):
        samples = sorted(dataset.open(str(gen.parent), split), key=lambda s: s["__key__"])
        for sample in samples[:2]:
            for j, name in enumerate(("sar.png", "optic.png")):
                raw = dataset_bytes(gen, sample["__key__"], name)
                full = Image.open(io.BytesIO(raw)).convert("RGB")
                want = np.asarray(full.resize((PANEL, PANEL), Image.Resampling.LANCZOS), float)
                y, x = 8 + j * (PANEL + 8), 8 + i * (PANEL + 8)
                panel = figure[y : y + PANEL, x : x + PANEL].astype(float)
                assert np.abs(panel - want).mean() < 3, (split, name)  # the image, resized
            i += 1
    assert i == 6 and figure.shape == (2 * (PANEL + 8) + 8, 6 * (PANEL + 8) + 8, 3)


def dataset_bytes(gen, key: str, name: str) -> bytes:
    """One member's bytes, read from its shard with webdataset (not through the writers)."""
    import webdataset as wds

    for shard in sorted(gen.rglob("*.tar")):
        for sample in wds.WebDataset(str(shard), shardshuffle=False):
            if sample["__key__"] == key:
                return sample[name]
    raise KeyError(key)
