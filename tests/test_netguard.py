"""The suite's network guard (tests/netguard) holds in every process the tests start."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
from netguard import NetworkGuardError, take

PUBLIC_IP = ("93.184.216.34", 80)  # never reached: refused before any packet leaves


def _connect(address: tuple[str, int]) -> str:
    try:
        socket.create_connection(address, timeout=1).close()
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"
    return "connected"


def _guard_log() -> list[dict]:
    return take(os.environ["SARLO_NETGUARD"])


def test_the_pytest_process_is_guarded():
    with pytest.raises(NetworkGuardError, match="tests may only reach 127.0.0.0/8"):
        socket.create_connection(PUBLIC_IP, timeout=1)
    with pytest.raises(NetworkGuardError, match="name lookup"):
        socket.getaddrinfo("example.com", 443)
    log = _guard_log()
    assert [r["pid"] for r in log] == [os.getpid()] * 2
    with socket.create_server(("127.0.0.1", 0)) as server:  # the loopback stays open
        socket.create_connection(server.getsockname(), timeout=1).close()


def test_a_worker_task_is_refused_and_the_refusal_is_logged(client):
    pids = set(client.run(os.getpid).values())
    by_ip = client.submit(_connect, PUBLIC_IP, pure=False).result()
    by_name = client.submit(_connect, ("example.com", 443), pure=False).result()
    assert by_ip.startswith("NetworkGuardError: network guard: connection to"), by_ip
    assert by_name.startswith("NetworkGuardError: network guard: name lookup"), by_name
    log = _guard_log()
    assert {r["pid"] for r in log} <= pids and len(log) == 2, log
    assert {r["target"] for r in log} == {repr(PUBLIC_IP), repr("example.com")}


def test_a_cli_subprocess_is_refused(tmp_path):
    """The CLI reading a scene from a public host: refused by the guard, and the refusal is
    the scene's reason (a test that swallowed it would still fail: the log is read after
    every test)."""
    url = "http://example.com/scene.nitf"
    cmd = [sys.executable, "-m", "sarlo_dask.cli", "standardize", url]
    cmd += ["--work", str(tmp_path / "work"), "--workers", "1"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    log = _guard_log()
    assert run.returncode != 0
    assert "network guard" in run.stdout + run.stderr, run.stdout + run.stderr
    assert log and all(r["target"] == repr("example.com") for r in log), log
    assert os.getpid() not in {r["pid"] for r in log}  # refused in the CLI's own processes
