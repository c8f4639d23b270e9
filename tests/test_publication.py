"""Releases published whole (sarlo_dask.io.generations) and checked (`sarlo verify`), with real
`sarlo` processes: a re-release killed at each of its steps, {work} filling up during the
tile stage, another set of inputs, shards deleted or damaged on disk."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sarlo_dask import dataset

from .helpers import tree
from .test_release import run_build


def sarlo(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "sarlo_dask.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def released(out: Path) -> dict[str, dict[str, bytes]]:
    """Every sample the documented reader gives (all splits, sha256 checked): key -> members."""
    found = {}
    for split in dataset.SPLITS:
        if dataset.shard_urls(str(out), split):
            for s in dataset.open(str(out), split, decode=False):
                found[s["__key__"]] = {k: v for k, v in s.items() if not k.startswith("__")}
    return found


def generations(out: Path) -> list[str]:
    return sorted(p.name for p in out.glob("gen-*"))


def current(out: Path) -> str:
    return json.loads((out / "manifest.json").read_text())["generation"]


@pytest.fixture
def copied(release_setup, release_built, tmp_path):
    """A copy of the reference build's {work} and {out}: re-runs reuse its tiles."""
    root, urls, config = release_setup
    work, out = tmp_path / "work", tmp_path / "out"
    shutil.copytree(root / "work", work)
    shutil.copytree(release_built[0], out)
    return work, out


def other_settings(release_setup, tmp_path, **release) -> tuple:
    """release_setup with its release settings changed: a new release of the same inputs."""
    root, urls, config = release_setup
    settings = yaml.safe_load(Path(config).read_text())
    settings["release"].update(release)
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(settings))
    return root, urls, changed


def paused_then_killed(proc: subprocess.Popen, point: str) -> str:
    """Wait for the build to stop at `point` (SARLO_PAUSE_AT), kill -9 its process group;
    what it printed."""
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if f"SARLO_PAUSE_AT {point}: paused" in line:
            break
    else:
        pytest.fail(f"the build ended without reaching {point}:\n{''.join(lines)}")
    assert proc.poll() is None  # still running when killed: the kill is the fault
    os.killpg(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    return "".join(lines)


def test_a_re_release_killed_at_each_step_leaves_the_old_or_the_new_release_whole(
    release_setup, copied, tmp_path, fault_table
):
    work, out = copied
    old, old_gen = released(out), current(out)
    changed = other_settings(release_setup, tmp_path, samples_per_shard=3)
    seen = {}
    for point in ("shards:2", "publish", "prune"):
        proc = run_build(changed, work, out, {"SARLO_PAUSE_AT": point})
        paused_then_killed(proc, point)
        check = sarlo("verify", str(out))
        got = released(out)
        seen[point] = (check.returncode, current(out), generations(out))
        assert check.returncode == 0, check.stdout + check.stderr
        new_gen = next(g for g in generations(out) if g != old_gen)
        if point == "prune":  # the pointer names the new release; the old one half removed
            assert current(out) == new_gen and got.keys() == old.keys() and got != old
            left = list((out / old_gen).rglob("*.tar"))
            assert 0 < len(left) < len(list((out / new_gen).rglob("*.tar")))
            new = got
        else:  # killed before the pointer: the old release, whole
            assert current(out) == old_gen and got == old
            assert len(list((out / new_gen).rglob("*.done.json"))) >= 2
    final = run_build(changed, work, out)
    log, _ = final.communicate(timeout=600)
    check = sarlo("verify", "--deep", str(out))  # every sample decodes too
    fault_table(
        "re-release SIGKILLed after 2 shards, before the pointer, while pruning",
        "verify 0; old, old, new samples",
        f"verify exits {[v[0] for v in seen.values()]}, old current: "
        f"{[v[1] == old_gen for v in seen.values()]}; final exit {final.returncode}, "
        f"verify {check.returncode}",
        0,
    )
    assert final.returncode == 0, log
    assert check.returncode == 0 and "read and decoded" in check.stdout, check.stdout
    assert released(out) == new and generations(out) == [current(out)] != [old_gen]


def test_work_full_during_the_tile_stage_publishes_nothing(
    release_setup, release_built, full_disk, tmp_path, fault_table
):
    """{work} holds the scene stores (standardize has nothing to do) on a disk too small for
    the tiles (12 MB: a tmpfs, or an fsspec file system raising ENOSPC): the build exits
    non-zero with the reason, the release in {out} (of other settings) stays whole and
    current; with room, the same command publishes."""
    root, _, _ = release_setup
    disk = full_disk
    disk.size(12 << 20)
    work, out = disk.path / "work", tmp_path / "out"
    shutil.copytree(root / "work" / "scenes", work / "scenes")
    shutil.copytree(release_built[0], out)
    before, old = tree(out), released(out)
    changed = other_settings(release_setup, tmp_path, samples_per_shard=3)
    first = run_build(changed, disk.url + "/work", out)
    log, _ = first.communicate(timeout=600)
    check = sarlo("verify", str(out))
    fault_table(
        f"{{work}} full in the tile stage ({disk.kind}), over a release",
        "non-zero, old release whole",
        f"exit {first.returncode}, verify {check.returncode}, out unchanged: {tree(out) == before}",
        len(old) - len(released(out)),
    )
    assert "No space left" in log and "[2/3] tiles" in log, log
    assert "skipped" in log.split("[2/3]")[0]  # the scene stage had nothing to write
    assert first.returncode != 0 and "release left as it was" in log, log
    assert check.returncode == 0, check.stdout
    assert tree(out) == before and released(out) == old
    disk.make_room()
    again = run_build(changed, disk.url + "/work", out)
    log, _ = again.communicate(timeout=600)
    assert again.returncode == 0, log
    assert sarlo("verify", str(out)).returncode == 0 and released(out).keys() == old.keys()


def test_other_spellings_of_every_path_rebuild_nothing(release_setup, copied, tmp_path):
    """The reference build again, every path spelled otherwise, as a user in another folder
    types them: inputs through a symlinked folder, relative with `./` and `//`; {work} and
    {out} relative with a trailing slash; the optical folder and the caption model relative
    with `./` and `/`. Nothing is made again: every scene and tile skipped, the same
    release, {work} and {out} byte for byte as they were."""
    root, urls, config = release_setup
    work, out = copied
    before_work, before_out = tree(work), tree(out)
    (tmp_path / "link").symlink_to(Path(urls[0]).parent, target_is_directory=True)
    names = [Path(u).name for u in urls]
    inputs = [f"link/{names[0]}", f"./link//{names[1]}", f"{tmp_path}/link/./{names[2]}"]
    settings = yaml.safe_load(Path(config).read_text())
    settings["tiles"]["optical"] = f"./{os.path.relpath(root / 'optical', tmp_path)}/"
    settings["captions"]["model"] = f"{os.path.relpath(settings['captions']['model'], tmp_path)}/"
    (tmp_path / "spelled.yaml").write_text(yaml.safe_dump(settings))
    cmd = ["build", *inputs, "--work", "./work/", "--out", "out/", "--config", "spelled.yaml"]
    run = subprocess.run(
        [sys.executable, "-m", "sarlo_dask.cli", *cmd, "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.split("[2/3]")[0].count("skipped") == len(urls), run.stdout
    assert "rebuilt" not in run.stdout and "(0 written," in run.stdout
    assert tree(work) == before_work and tree(out) == before_out  # nothing made again


def test_another_set_of_inputs_is_refused_unless_replace(release_setup, copied, tmp_path):
    root, urls, config = release_setup
    work, out = copied
    before = tree(out)
    cmd = ["build", *urls[:2], "--work", str(work), "--out", str(out), "--config", str(config)]
    refused = sarlo(*cmd)
    assert refused.returncode == 2 and tree(out) == before
    (line,) = refused.stderr.strip().splitlines()
    assert "holds the release of other inputs: 1 of its scenes not given (coarse)" in line, line
    assert "--replace" in line and "dashboard" not in refused.stdout  # before any cluster
    replaced = sarlo(*cmd, "--replace", "--workers", "2")
    assert replaced.returncode == 0, replaced.stdout + replaced.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["scenes"]) == {"fine", "fine_skew"}
    assert manifest["left"] == [
        {"scene_id": "coarse", "samples": 24, "reason": "not among the inputs"}
    ]
    assert sarlo("verify", str(out)).returncode == 0


def test_a_deleted_and_a_damaged_shard_are_named_refused_and_repaired(
    release_setup, release_built, copied, fault_table
):
    out_ref = release_built[0]
    work, out = copied
    gen = current(out)
    shards = sorted((out / gen).rglob("*.tar"))
    gone, flipped = shards[1], shards[-1]
    gone.unlink()
    data = bytearray(flipped.read_bytes())
    data[len(data) // 3] ^= 0x01
    flipped.write_bytes(bytes(data))
    assert flipped.read_bytes() != (out_ref / flipped.relative_to(out)).read_bytes()
    (out / gen / "train" / "chunk_000" / "shard-00000.tar.partial-x").write_bytes(b"killed")
    kept = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in shards if p not in (gone, flipped)}
    check = sarlo("verify", str(out))
    lines = check.stdout.splitlines()
    size = (out_ref / gone.relative_to(out)).stat().st_size
    assert check.returncode == 1 and len(lines) == 2, lines  # a killed build's file: no problem
    assert f"MISSING {gone.relative_to(out)}: listed in the manifest ({size} bytes)" in lines
    assert any(line.startswith(f"MISMATCH {flipped.relative_to(out)}: sha256") for line in lines)
    split = flipped.relative_to(out / gen).parts[0]
    with pytest.raises(dataset.ShardError, match=str(flipped.relative_to(out))):
        list(dataset.open(str(out), split))
    with pytest.raises(FileNotFoundError, match=gone.name):
        list(dataset.open(str(out), gone.relative_to(out / gen).parts[0]))
    with pytest.raises((dataset.ShardError, FileNotFoundError)) as hf:  # HF's data_files
        dataset.hf_data_files(str(out))
    assert gone.name in str(hf.value) or str(flipped.relative_to(out)) in str(hf.value)
    rerun = run_build(release_setup, work, out)
    log, _ = rerun.communicate(timeout=600)
    after = sarlo("verify", str(out))
    fault_table(
        "a shard deleted, a byte flipped in another",
        "verify names both; reader raises; re-run repairs",
        f"verify {check.returncode} ({len(lines)} lines); re-run {rerun.returncode}, "
        f"then verify {after.returncode}",
        0,
    )
    assert rerun.returncode == 0, log
    assert f"DAMAGED {gone}: missing; rewriting the shard" in log
    assert f"DAMAGED {flipped}: sha256" in log
    assert "2 written" in log
    assert after.returncode == 0, after.stdout
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in kept} == kept  # untouched
    assert tree(out) == tree(out_ref)
