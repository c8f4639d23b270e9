"""Resume checks what it reuses: a re-run with a setting changed at any stage gives the bytes
of a clean build with the new settings (what was made otherwise is rebuilt, never reused),
and an unchanged re-run rewrites nothing."""

from __future__ import annotations

import shutil

import pytest
import yaml

from sarlo_dask.pipeline import build_dataset

from .helpers import build_configs, tree


def _prompts_short_capped() -> dict:
    from sarlo_dask.config import CaptionConfig

    prompts = {k: v.model_dump() for k, v in CaptionConfig().prompts.items()}
    prompts["SHORT"]["max_new_tokens"] = 3
    return prompts


CHANGES = {  # stage -> (section, key, new value)
    "standardize": ("standardize", "spacing", 1.0),
    "tiles": ("tiles", "stride", 96),
    "captions": ("captions", "prompts", _prompts_short_capped()),
    "captions_off": ("captions", "model", None),  # earlier captions are not shipped
    "release": ("release", "samples_per_shard", 3),
}


def _stats(root) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _copy_of_reference(release_setup, tmp_path):
    root = release_setup[0]
    work, out = tmp_path / "work", tmp_path / "out"
    shutil.copytree(root / "work", work)  # copy2: sizes and times kept
    shutil.copytree(root / "out", out)
    return work, out


def test_an_unchanged_rerun_rewrites_nothing(release_setup, release_built, client, tmp_path):
    _, urls, config = release_setup
    work, out = _copy_of_reference(release_setup, tmp_path)
    before = {"work": _stats(work), "out": _stats(out)}
    result = build_dataset(urls, str(work), str(out), build_configs(config), client)
    assert result.exit_code() == 0
    assert all(r.status == "skipped" and not r.rebuilt for r in result.scenes)
    assert result.release.written == 0 and not result.release.removed
    assert {"work": _stats(work), "out": _stats(out)} == before


@pytest.mark.parametrize("stage", sorted(CHANGES))
def test_a_changed_setting_rebuilds_to_the_bytes_of_a_clean_build(
    stage, release_setup, release_built, client, tmp_path
):
    _, urls, config = release_setup
    section, key, value = CHANGES[stage]
    settings = yaml.safe_load(config.read_text())
    settings[section][key] = value
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(settings))
    cfgs = build_configs(changed)

    work, out = _copy_of_reference(release_setup, tmp_path)
    again = build_dataset(urls, str(work), str(out), cfgs, client)
    clean = build_dataset(urls, str(tmp_path / "w2"), str(tmp_path / "o2"), cfgs, client)
    assert again.exit_code() == clean.exit_code() == 0
    got, want = tree(out), tree(tmp_path / "o2")
    assert sorted(got) == sorted(want)
    assert got == want, [k for k in got if got[k] != want.get(k)]
    assert got != tree(release_built[0]), "the change changed nothing: not a test"

    # what the re-run says it rebuilt, and why
    scenes_rebuilt = [r.rebuilt for r in again.scenes if r.rebuilt]
    tiles_rebuilt = [t.rebuilt for t in again.tiles if t.rebuilt]
    if stage == "standardize":
        assert len(scenes_rebuilt) == len(urls) and "standardize settings changed" in str(
            scenes_rebuilt
        )
        assert len(tiles_rebuilt) == len(urls)
    elif stage == "tiles":
        assert not scenes_rebuilt and tiles_rebuilt == ["tiles settings changed"] * len(urls)
    else:
        assert not scenes_rebuilt and not tiles_rebuilt
    if stage == "release":
        assert again.release.removed or again.release.written  # the old plan's shards went
