"""Lineage: a setting that tunes execution is in no digest (changing it on resume rebuilds
nothing, and a clean build under it gives the same bytes); one that selects scenes is applied
again to what is reused; every other setting changes its stage's digest (brute force over
every field of every stage's configuration)."""

from __future__ import annotations

import shutil
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from sarlo_dask import lineage
from sarlo_dask.config import CaptionConfig, ReleaseConfig, StandardizeConfig, TileConfig
from sarlo_dask.io import writers
from sarlo_dask.pipeline import build_dataset

from .helpers import build_configs, tree

OTHER: dict[str, Any] = {  # another valid value, where a generic one would not validate
    "polarizations": ("H:V",),
    "optical_date": "2024-05-01",
    "select_by": "spacing",
    "writers": ["lineage-test"],
    "preview_format": "jpg",
    "preview_scale": "sigma0",
    "optical_mode": "metadata",
    "max_mesh_grid": 9,
    "device": "cuda",
    "dem_vertical_datum": "egm2008",
    "dem_use": "check",
    "backend": ("openai", "transformers"),
    "image_format": "jpeg",
    "kind": "chat",
    "image": "sar",
    "dtype": "float16",
    "servers": ("http://127.0.0.1:2/v1",),
    "splits": {"train": 0.5, "validation": 0.25, "test": 0.25},
    "check_committed": "size",
    "storage_options": {"anon": True},
    "dem_storage_options": {"anon": True},
    "tile_cache_options": {"anon": True},
    "storage": {"options": {"anon": True}, "urls": {"s3://scenes/": {"anon": False}}},
    "prompts": {
        k: {**v.model_dump(), "max_new_tokens": 7} for k, v in CaptionConfig().prompts.items()
    },
}


@writers.register
class _Listing(writers.SampleWriter):
    """A sample writer for `writers`' other value."""

    kind = "lineage-test"

    def files(self, release: writers.ReleaseView) -> dict[str, bytes]:
        return {"listing.txt": b""}


def _other(name: str, value: Any) -> Any:
    if name in OTHER:
        options = OTHER[name]
        return next(o for o in options if o != value) if name == "backend" else options
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value / 2 or 0.5
    if isinstance(value, str):
        return value + "x"
    return {"hae": 12.5, "image_size": 64, "max_terrain_shift_px": 2.0}.get(name, "other")


CONFIGS = {  # a base configuration of each stage, and the settings it leaves unused
    "standardize": (StandardizeConfig(dem="dem/"), set()),
    "tiles": (TileConfig(optical="tiles/"), set()),
    "captions": (
        CaptionConfig(model="m", servers=("http://127.0.0.1:1/v1",)),
        {"image_format", "image_size", "seed"},  # a change of backend moves it, as it should
    ),
    "captions-openai": (
        CaptionConfig(model="m", backend="openai", servers=("http://127.0.0.1:1/v1",)),
        {"kind", "device", "dtype", "trust_remote_code"},
    ),
    "release": (ReleaseConfig(optical_licence="CC-BY-4.0"), set()),
}


@pytest.mark.parametrize("stage", sorted(CONFIGS))
def test_each_setting_is_in_the_digest_exactly_when_it_shapes(stage):
    base, unused = CONFIGS[stage]
    model: type[BaseModel] = type(base)
    roles = lineage.roles(model)
    assert set(roles) == set(model.model_fields)
    for name, role in roles.items():
        other = _other(name, getattr(base, name))
        changed = model.model_validate(base.model_dump() | {name: other})
        assert getattr(changed, name) != getattr(base, name), name
        moves = changed.digest() != base.digest()
        assert moves == (role == "shaping" and name not in unused), (stage, name, role)
        if isinstance(base, StandardizeConfig):
            assert (changed.selection_digest() != base.selection_digest()) == (
                role == "selection"
            ), name


def test_the_roles_declared():
    """What users rely on: chunk sizes, device and retries never rebuild; scene selection
    never rebuilds a store; the target spacing and every output setting do."""
    std, tiles, caps = (lineage.roles(m) for m in (StandardizeConfig, TileConfig, CaptionConfig))
    for name in ("chunk_azimuth", "chunk_range", "store_chunk", "device", "storage_options"):
        assert std[name] == "execution", name
    for name in ("storage_options", "storage"):  # credentials: in no digest, every section
        assert tiles[name] == lineage.roles(ReleaseConfig)[name] == "execution", name
    for name in ("storage",):
        assert std[name] == "execution", name
    selection = ("select_by", "min_resolution", "max_resolution", "min_spacing", "max_spacing")
    for name in (*selection, "polarizations", "min_size"):
        assert std[name] == "selection", name
    assert std["spacing"] == std["deskew"] == std["dem"] == "shaping"
    assert tiles["device"] == tiles["http_retries"] == tiles["prefetch_tiles"] == "execution"
    assert tiles["size"] == tiles["zoom"] == "shaping"
    assert caps["retries"] == caps["servers"] == caps["max_in_flight"] == "execution"
    assert lineage.roles(ReleaseConfig)["check_committed"] == "execution"


EXECUTION = {  # what the reference build (conftest.release_setup) is run again with
    "standardize": {
        "chunk_azimuth": 96,
        "chunk_range": 80,
        "store_chunk": 64,
        "device": "cpu",
        # selection: wider, so every scene is still selected
        "min_size": 32,
        "min_spacing": 0.05,
        "max_spacing": 5.0,
        "min_resolution": 0.05,
        "max_resolution": 5.0,
    },
    "tiles": {"device": "cpu", "decoded_cache_mb": 0, "prefetch_tiles": 0, "http_retries": 0},
    "captions": {"retries": 0, "max_in_flight": 1},
    "release": {"check_committed": "size"},
}


def _with(config, changes: dict[str, dict[str, Any]], path):
    settings = yaml.safe_load(config.read_text())
    for section, values in changes.items():
        settings.setdefault(section, {}).update(values)
    path.write_text(yaml.safe_dump(settings))
    return build_configs(path)


def test_execution_settings_changed_on_resume_rebuild_nothing_and_shape_nothing(
    release_setup, release_built, client, tmp_path
):
    root, urls, config = release_setup
    cfgs = _with(config, EXECUTION, tmp_path / "execution.yaml")
    work, out = tmp_path / "work", tmp_path / "out"
    shutil.copytree(root / "work", work)
    shutil.copytree(root / "out", out)
    before = {"work": tree(work), "out": tree(out)}
    again = build_dataset(urls, str(work), str(out), cfgs, client)
    assert again.exit_code() == 0
    assert all(r.status == "skipped" and not r.rebuilt for r in again.scenes)
    assert not [t.rebuilt for t in again.tiles if t.rebuilt]
    assert again.release.written == 0 and not again.release.removed
    assert {"work": tree(work), "out": tree(out)} == before

    # a clean build under them gives the reference's bytes: they shape nothing
    clean = build_dataset(urls, str(tmp_path / "w2"), str(tmp_path / "o2"), cfgs, client)
    assert clean.exit_code() == 0
    got, want = tree(tmp_path / "o2"), tree(release_built[0])
    assert sorted(got) == sorted(want)
    assert got == want, [k for k in got if got[k] != want.get(k)]


def test_a_narrower_selection_refuses_a_reused_store_and_rebuilds_nothing(
    release_setup, release_built, client, tmp_path
):
    """max_resolution below the coarse scene's resolution: that scene is refused with the
    selection's reason, read from its header; the others are reused as they are."""
    root, urls, config = release_setup
    cfgs = _with(config, {"standardize": {"max_resolution": 1.0}}, tmp_path / "narrow.yaml")
    work = tmp_path / "work"
    shutil.copytree(root / "work", work)
    before = tree(work / "scenes")
    again = build_dataset(urls, str(work), str(tmp_path / "out"), cfgs, client)
    status = {r.scene_id: (r.status, r.reason) for r in again.scenes}
    assert status["coarse"][0] == "failed" and "resolution" in status["coarse"][1], status
    assert all(s == "skipped" for sid, (s, _) in status.items() if sid != "coarse"), status
    assert not any(r.rebuilt for r in again.scenes)
    assert tree(work / "scenes") == before
