"""The `sarlo` command as a user runs it: simulate, standardize (good and bad input), demo."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import xarray as xr


def sarlo(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sarlo_dask.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


def test_simulate_writes_a_sicd_and_its_truth(tmp_path):
    out = tmp_path / "s.nitf"
    res = sarlo(
        "simulate",
        str(out),
        "--rows",
        "256",
        "--cols",
        "320",
        "--spacing",
        "0.5",
        "--skew",
        "0.1",
        "--targets",
        "3",
    )
    assert res.returncode == 0, res.stderr
    truth = json.loads(Path(str(out) + ".truth.json").read_text())
    assert len(truth["targets"]) == 3 and out.stat().st_size > 256 * 320 * 8


def test_simulate_refuses_a_bad_weighting_in_one_line(tmp_path):
    res = sarlo("simulate", str(tmp_path / "s.nitf"), "--weighting", "GAUSS")
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and "GAUSS" in res.stderr


def test_standardize_good_and_bad_inputs_then_resume(scenes, tmp_path):
    bad = tmp_path / "broken.nitf"
    bad.write_bytes(b"NITF02.10" + b"\0" * 100)
    work = tmp_path / "work"
    args = [
        "standardize",
        str(scenes["coarse"]),
        str(bad),
        "--work",
        str(work),
        "--min-size",
        "64",
        "--workers",
        "2",
    ]
    first = sarlo(*args)
    assert first.returncode == 3, first.stdout + first.stderr
    assert f"FAILED {bad}: " in first.stderr
    assert "dashboard: http://" in first.stdout
    assert "1 standardized, 0 already done, 1 failed" in first.stdout
    ds = xr.open_zarr(work / "scenes" / "coarse.zarr", consolidated=False)
    assert ds.slc.dims == ("azimuth", "range") and "lat" in ds
    second = sarlo(*args)
    assert "0 standardized, 1 already done, 1 failed" in second.stdout


def test_nothing_built_exits_4(tmp_path):
    empty = tmp_path / "e.nitf"
    empty.write_bytes(b"")
    res = sarlo("standardize", str(empty), "--work", str(tmp_path / "w"), "--workers", "1")
    assert res.returncode == 4
    assert "empty file" in res.stderr


def test_demo_runs_start_to_end(demo):
    out, res = demo
    assert res.returncode == 0, res.stdout + res.stderr
    assert "dashboard: http" in res.stdout and "[3/3] release" in res.stdout
    store = xr.open_zarr(out / "work" / "scenes" / "sim_scene_001.zarr", consolidated=False)
    assert store.sizes["azimuth"] >= 1024 and store.sizes["range"] >= 1024
    # no caption model: the build still runs; captions are null with the reason
    from sarlo_dask import dataset

    samples = list(dataset.open(str(out / "release"), "train"))
    assert len(samples) == 4  # one pass of 2 x 2 tiles
    for s in samples:
        assert s["meta.json"]["caption"] is None
        assert s["meta.json"]["caption_reason"] == "no caption model configured"
        assert s["meta.json"]["optical"]["status"] == "ok"


def test_yaml_sections_and_bad_settings(tmp_path):
    from sarlo_dask.config import load_config, load_tile_config

    cfg = tmp_path / "build.yaml"
    cfg.write_text("standardize:\n  spacing: 1.0\ntiles:\n  size: 512\n  stride: 256\n")
    assert load_config(cfg).spacing == 1.0
    assert load_tile_config(cfg, stride=128).model_dump()["stride"] == 128
    assert load_tile_config(cfg).size == 512
    res = sarlo("tiles", "--work", str(tmp_path), "--preview-scale", "loud")
    assert res.returncode == 2
    assert res.stderr.strip().startswith("error: invalid settings: preview_scale")
    assert res.stderr.strip().count("\n") == 0


def test_configuration_mistakes_are_one_line_errors_before_any_cluster(tmp_path):
    """A typo, an unknown section, a section that is not a mapping, malformed YAML: one line
    naming the file and the culprit, exit 2, before any cluster starts (no dashboard line)."""

    cases = {
        "typo": ("spaceing: 1.0\n", "unknown setting standardize.spaceing"),
        "typo_in_section": ("tiles:\n  sise: 512\n", "unknown setting tiles.sise"),
        "section": ("tile:\n  size: 512\n", "unknown section 'tile'"),
        "section_beside": ("tiles: {size: 256}\ntile: {size: 512}\n", "unknown section 'tile'"),
        "not_mapping": ("tiles: 512\n", "section 'tiles' is not a mapping"),
        "malformed": ("tiles:\n  size: [1\n  stride: 2\n", "malformed YAML at line 3"),
    }
    for name, (text, words) in cases.items():
        cfg = tmp_path / f"{name}.yaml"
        cfg.write_text(text)
        for command in (["standardize", "x.nitf"], ["build", "x.nitf", "--out", "o"]):
            res = sarlo(*command, "--work", str(tmp_path / "w"), "--config", str(cfg))
            err = res.stderr.strip()
            assert res.returncode == 2, (name, command, res.stdout, err)
            assert err == err.splitlines()[0] and err.startswith(f"error: {cfg}: "), err
            assert words in err, (name, err)
            assert "dashboard" not in res.stdout, (name, command)
    assert not (tmp_path / "w").exists()


def test_yaml_spacing_is_not_overridden_by_a_default_flag(scenes, tmp_path):
    cfg = tmp_path / "b.yaml"
    cfg.write_text("standardize:\n  spacing: 1.0\n  min_size: 64\n")
    res = sarlo(
        "standardize",
        str(scenes["coarse"]),
        "--work",
        str(tmp_path / "w"),
        "--config",
        str(cfg),
        "--workers",
        "1",
    )
    assert res.returncode == 0, res.stderr
    ds = xr.open_zarr(tmp_path / "w" / "scenes" / "coarse.zarr")
    assert abs(ds.attrs["spacing_eff_rg"] - 1.0) < 0.01


def test_a_scene_simulated_with_the_defaults_is_released_by_sarlo_build(tmp_path):
    """`sarlo simulate s.nitf` then `sarlo build s.nitf`, as a user tries the two commands."""
    res = sarlo("simulate", "s.nitf", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "3200 x 3200 at 0.4 m" in res.stdout and "a landscape" in res.stdout
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "sarlo_dask.cli",
            "build",
            "s.nitf",
            "--work",
            "w",
            "--out",
            "r",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=900,
    )
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert manifest["samples"] == 4 and manifest["complete"], manifest["samples"]


def test_help_shows_no_type_tags():
    for command in (["build"], ["standardize"], ["tiles"], ["demo"], ["simulate"], ["stats"]):
        res = sarlo(*command, "--help")
        assert res.returncode == 0, res.stderr
        assert not re.search(r"<(str|bool|int|float|path|list\[)", res.stdout), res.stdout
    assert "--work  " in " ".join(sarlo("build", "--help").stdout.split("│"))


def test_ctrl_c_during_a_build_exits_130_with_the_command_that_resumes(release_setup, tmp_path):
    """Ctrl-C in a terminal interrupts the command's whole process group (its cluster's
    workers too): one line saying how to resume, exit 130; that command then finishes."""
    import os
    import shlex
    import signal

    _, urls, config = release_setup
    args = [*urls, "--work", "w", "--out", "r", "--config", str(config)]
    # held after its first shard (SARLO_PAUSE_AT): interrupted while it surely runs
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "SARLO_PAUSE_AT": "shards:1"}
    cmd = [sys.executable, "-m", "sarlo_dask.cli", "build", *args]
    proc = subprocess.Popen(
        cmd,
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        # as a shell starts it: SIGINT at its default, whatever this process's is
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:  # its stdout is small: the pipe never fills meanwhile
        seen.append(line)
        if "SARLO_PAUSE_AT shards:1: paused" in line:
            break
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, "".join(seen) + out + err
    assert not (tmp_path / "r" / "manifest.json").exists()  # it really stopped before the end
    last = err.strip().splitlines()[-1]
    prefix = "interrupted: what was committed is kept; to resume, run the same command again: "
    assert last.startswith(prefix), err
    again = shlex.split(last[len(prefix) :])
    assert again == ["sarlo", "build", *args]
    res = subprocess.run(
        [sys.executable, "-m", "sarlo_dask.cli", *again[1:]],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert (tmp_path / "r" / "manifest.json").exists()
