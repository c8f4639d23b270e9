"""Typed outcomes and the release's guards: what a build records, and what it refuses to
publish (a release that would drop scenes unread now)."""

from __future__ import annotations

import json
import shutil

from sarlo_dask.driver.outcomes import (
    Build,
    Failure,
    Release,
    SceneResult,
    SceneTiles,
    transient_scenes,
)
from sarlo_dask.release import publish
from sarlo_dask.store import Store


def test_a_scene_without_any_window_is_recorded_not_passed():
    build = Build([], [SceneTiles("small", "done")], Release({"samples": 3}, 1, 0))
    (row,) = build.failures()
    assert row["id"] == "small" and "no window of the tile size fits" in row["reason"]
    assert build.exit_code() == 3


def test_only_failures_that_are_not_refusals_hold_the_release_back():
    flaky = SceneResult("a.nitf", "a", "done")
    flaky.fail(ValueError("boom"), "standardize")  # not a SceneError: transient
    bad = SceneResult("b.nitf", "b", "done")
    bad.fail("scene smaller than one tile", "standardize")  # a refusal by rule
    tiles = SceneTiles("c", "done")
    tiles.error(Failure("c", "scene", "tiles", "OSError: bucket unreachable", "OSError"))
    assert transient_scenes([flaky, bad], [tiles]) == ["a", "c"]


def test_a_build_held_back_leaves_the_current_release(release_built, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(release_built[0], out)
    store = Store(str(out))
    plan = json.loads((out / "manifest.json").read_text())["plan"]
    kept = publish.unreleased(store, "x could not be read now")  # the current manifest
    assert kept.manifest["plan"] == plan and kept.errors and kept.written == 0
    assert kept.errors[-1].reason == "x could not be read now"
