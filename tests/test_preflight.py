"""Errors before work: what the command line, the configuration and a few small requests can
tell is refused in one line, exit 2, before any cluster starts; a catalogue's bad scenes are
one line each, with no worker traceback, and typed rows in failures.jsonl."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import needs_shared


def sarlo(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sarlo_dask.cli", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )


def _no_aws_credentials() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["AWS_ENDPOINT_URL"] = os.environ["AWS_ENDPOINT_URL"]  # moto, on 127.0.0.1
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    env["AWS_SHARED_CREDENTIALS_FILE"] = env["AWS_CONFIG_FILE"] = "/nonexistent"
    return env


def test_usage_errors_are_one_line_exit_2_before_any_cluster(s3, s3_server, tmp_path):
    """An unknown protocol, a bucket without credentials (moto), an unreachable optical
    source, a folder without tiles, --workers 0, a missing jobqueue file."""
    work, out = str(tmp_path / "w"), str(tmp_path / "o")
    empty = tmp_path / "no_tiles"
    empty.mkdir()
    before = len(s3_server.requests)
    cases = [
        (["--work", "foo://x", "--out", out], {}, "error: --work foo://x: unknown protocol 'foo'"),
        (["--work", work, "--out", "bar://y/z"], {}, "error: --out bar://y/z: unknown protocol"),
        (
            ["--work", "s3://sarlo/w", "--out", out],
            _no_aws_credentials(),
            "error: --work s3://sarlo/w: cannot write there (NoCredentialsError",
        ),
        (
            ["--work", work, "--out", out, "--optical", "http://127.0.0.1:9/{z}/{x}/{y}.png"],
            {},
            "error: optical source http://127.0.0.1:9/{z}/{x}/{y}.png: unreachable",
        ),
        (
            ["--work", work, "--out", out, "--optical", str(empty)],
            {},
            f"error: optical source {empty}: the folder holds no XYZ tiles",
        ),
        (["--work", work, "--out", out, "--workers", "0"], {}, "error: --workers 0: a cluster"),
        (
            ["--work", work, "--out", out, "--cluster", "slurm:missing.yaml"],
            {},
            "error: --cluster slurm:missing.yaml: no such file missing.yaml",
        ),
    ]
    for args, env, words in cases:
        start = time.monotonic()
        res = sarlo("build", "scene.nitf", *args, env=env or None)
        took = time.monotonic() - start
        err = res.stderr.strip()
        assert res.returncode == 2, (args, res.stdout, err)
        assert err.startswith(words) and len(err.splitlines()) == 1, (words, err)
        assert "dashboard" not in res.stdout and "Traceback" not in err, args
        print(f"{words[:50]}...: exit 2 in {took:.1f} s")  # about 1.5 s on an idle machine
    assert not Path(work).exists() and not Path(out).exists()
    # the credentials case never reached moto (botocore refuses to sign without any)
    assert not [r for r in s3_server.requests[before:] if r[1].startswith("/sarlo/w/")]


@needs_shared
def test_bad_scenes_are_one_line_each_and_typed_in_failures(release_setup, tmp_path):
    """3 good scenes and 8 bad ones through `sarlo build`: each refusal one line, no worker
    traceback, and failures.jsonl rows with stage, reason, exception type and retries."""
    from .test_pipeline import _write_bad_inputs

    _, urls, config = release_setup
    expected = _write_bad_inputs(tmp_path / "bad", Path(urls[0]))
    bad = [str(tmp_path / "bad" / f"{name}.nitf") for name in expected]
    work = tmp_path / "w"
    res = sarlo(
        "build",
        *urls,
        *bad,
        "--work",
        str(work),
        "--out",
        str(tmp_path / "o"),
        "--config",
        str(config),
        "--workers",
        "2",
    )
    text = res.stdout + res.stderr
    assert res.returncode == 3, text
    assert "Traceback" not in text and "Compute Failed" not in text, text
    # output to a file (a pipe here): whole lines, no carriage-return redraws; a clean
    # shutdown, no warning of distributed's (nanny, worker, scheduler)
    assert "\r" not in text and not [ln for ln in text.splitlines() if "distributed." in ln]
    for name, words in expected.items():
        lines = [ln for ln in text.splitlines() if f"FAILED {tmp_path}/bad/{name}.nitf" in ln]
        assert len(lines) == 1 and words in lines[0], (name, lines)
    rows = [json.loads(ln) for ln in (work / "failures.jsonl").read_text().splitlines()]
    assert {r["id"] for r in rows} == set(expected)
    for r in rows:
        assert {"stage", "reason", "exception", "retries", "kind"} <= set(r)
        assert r["kind"] == "scene" and r["stage"] in ("ingest", "standardize")
        assert isinstance(r["retries"], int) and isinstance(r["exception"], str)
        assert r["exception"] == "SceneError", r


def test_the_worker_log_filter_drops_refusals_only():
    """QuietRefusals: a worker's Compute Failed record of a SceneError goes; others stay."""
    import logging

    from sarlo_dask.driver.cluster import QuietRefusals

    def record(exc_text: str) -> logging.LogRecord:
        return logging.LogRecord(
            "distributed.worker",
            logging.ERROR,
            "w.py",
            1,
            "Compute Failed\nKey: %s\nState: %s\nTask: %s\nException: %r\nTraceback: %r\n",
            ("k", "executing", "task", exc_text, "tb"),
            None,
        )

    f = QuietRefusals()
    assert not f.filter(record("SceneError('/x.nitf: file not found')"))
    assert f.filter(record("ZeroDivisionError('division by zero')"))


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_version_and_an_unexpected_error_in_one_line(tmp_path):
    from sarlo_dask import __version__

    res = sarlo("--version")
    assert res.returncode == 0 and res.stdout.strip() == f"sarlo-dask {__version__}"
    # an error no check foresaw (a folder that cannot be made): one line, the traceback
    # with --debug
    target = "/proc/no_such_folder/x.nitf"
    res = sarlo("simulate", target, "--rows", "64", "--cols", "64")
    err = res.stderr.strip()
    assert res.returncode == 1 and len(err.splitlines()) == 1, err
    assert err.startswith("error: FileNotFoundError: ") and "--debug" in err
    res = sarlo("--debug", "simulate", target, "--rows", "64", "--cols", "64")
    assert "Traceback" in res.stderr


@needs_shared
def test_dry_run_reports_selection_and_tiles_from_headers(release_setup, release_built, tmp_path):
    """--dry-run: each scene selected with the tiles the build cut, or refused with the
    build's reason; nothing written, no cluster."""
    from .test_pipeline import _write_bad_inputs

    root, urls, config = release_setup
    expected = _write_bad_inputs(tmp_path / "bad", Path(urls[0]))
    bad = [str(tmp_path / "bad" / f"{name}.nitf") for name in expected]
    work, out = tmp_path / "w", tmp_path / "o"
    args = ["--work", str(work), "--out", str(out), "--config", str(config), "--dry-run"]
    res = sarlo("build", *urls, *bad, *args)
    assert res.returncode == 0, res.stderr
    assert "dashboard" not in res.stdout and not work.exists() and not out.exists()
    lines = res.stdout.splitlines()
    for url in urls:
        sid = Path(url).stem
        made = json.loads((root / "work" / "tiles" / f"{sid}.done.json").read_text())
        windows = made["kept"] + len(made["refused"])
        assert any(ln.startswith(f"selected {sid}: ") and f" {windows} tiles" in ln for ln in lines)
    for name, words in expected.items():
        line = [ln for ln in lines if ln.startswith(f"refused  {tmp_path}/bad/{name}.nitf: ")]
        assert len(line) == 1 and words in line[0], (name, line)
    assert lines[-1].startswith(f"dry run: {len(urls)} of {len(urls) + len(bad)} scenes selected")
    bare = sarlo("build", *urls, *bad, "--config", str(config), "--dry-run")  # no --work/--out
    assert bare.returncode == 0 and bare.stdout == res.stdout, bare.stderr
    gone = sarlo("build", *urls, "--work", str(work), "--config", str(config))  # no --out
    assert gone.returncode == 2 and "dashboard" not in gone.stdout and not work.exists()
    (line,) = gone.stderr.strip().splitlines()
    assert line.startswith("error: sarlo build: missing --out (") and "--dry-run" in line, line


def test_missing_inputs_models_and_optical_zooms_are_refused_before_any_cluster(
    release_setup, tmp_path
):
    """A missing input file, a caption model that cannot be loaded offline (a mistyped folder,
    a folder that is no model, a hub id not in the cache), an optical folder without the zoom
    asked or without tiles over a scene: one line each, exit 2, no cluster started."""
    root, urls, config = release_setup
    work, out = str(tmp_path / "w"), str(tmp_path / "o")
    missing = str(tmp_path / "gone.nitf")
    not_a_model = tmp_path / "not_a_model"
    not_a_model.mkdir()
    (not_a_model / "weights.bin").write_bytes(b"\0")
    elsewhere = tmp_path / "elsewhere" / "18" / "1" / "1.png"  # zoom 18, far from the scenes
    elsewhere.parent.mkdir(parents=True)
    elsewhere.write_bytes((next((root / "optical" / "18").rglob("*.png"))).read_bytes())
    hub = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    base = ["--work", work, "--out", out, "--config", str(config)]
    cases = [
        ([urls[0], missing, *base], None, [f"error: input {missing}: no such file"]),
        (
            [*urls, *base, "--caption-model", "/models/Qwen2-VL-2B-Instruct"],
            None,
            ["error: captions.model /models/Qwen2-VL-2B-Instruct: no such model folder"],
        ),
        (
            [*urls, *base, "--caption-model", str(not_a_model)],
            None,
            [f"error: captions.model {not_a_model}: the folder has no config.json"],
        ),
        (
            [*urls, *base, "--caption-model", "Salesforce/blip-image-captioning-base"],
            hub,
            [
                "error: captions.model Salesforce/blip-image-captioning-base: neither a model "
                "folder here nor a model in the local Hugging Face cache"
            ],
        ),
        (
            [*urls, *base, "--zoom", "19"],
            None,
            [f"error: optical source {root / 'optical'}: no tiles at zoom 19 (it has zoom [18])"],
        ),
        (
            [*urls, *base, "--optical", str(tmp_path / "elsewhere")],
            None,
            [
                f"error: optical source {tmp_path / 'elsewhere'}: no tile at zoom 18 over {u} "
                for u in urls
            ],
        ),
    ]
    for args, env, lines in cases:
        res = sarlo("build", *args, env=env)
        err = res.stderr.strip().splitlines()
        assert res.returncode == 2, (args, res.stdout, res.stderr)
        assert len(err) == len(lines), err
        for line, want in zip(err, lines, strict=True):
            assert line.startswith(want), (line, want)
        assert "dashboard" not in res.stdout and "Traceback" not in res.stderr, args
    assert not Path(work).exists() and not Path(out).exists()
