"""The lease on {work} and {out}: one command writes a store at a time, a dead holder's
lease is taken over, and the decision is a pure function."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sarlo_dask.driver.lease import (
    LEASE_NAME,
    Holder,
    Lease,
    LeaseHeld,
    boot_id,
    command_line,
    held,
    process_start,
    stale_reason,
)
from sarlo_dask.store import Store

NOW = 1_800_000_000.0


def holder(**fields) -> Holder:
    base = dict(
        host="h1", pid=42, started="2026-12-06T20:00:00Z", command="sarlo build x",
        renewed=NOW - 10, token="t", boot="b1", pid_start="100",
    )  # fmt: skip
    return Holder(**{**base, **fields})


def test_stale_reason_same_host_follows_the_process():
    alive = {42: "100"}.get
    assert stale_reason(holder(), NOW, "h1", "b1", alive) == ""
    # renewal does not matter on the same host: a live process keeps its lease
    assert stale_reason(holder(renewed=NOW - 1e6), NOW, "h1", "b1", alive) == ""
    assert "gone" in stale_reason(holder(), NOW, "h1", "b1", {}.get)
    assert "another process" in stale_reason(holder(), NOW, "h1", "b1", {42: "999"}.get)
    assert "restarted" in stale_reason(holder(), NOW, "h1", "b2", alive)


def test_stale_reason_other_host_follows_the_renewals():
    never = {}.get  # another host's pids are not looked at
    assert stale_reason(holder(renewed=NOW - 299), NOW, "h2", "b9", never, ttl=300) == ""
    assert "not renewed for 301 s" in stale_reason(
        holder(renewed=NOW - 301), NOW, "h2", "b9", never, ttl=300
    )
    assert "no holder" in stale_reason(None, NOW, "h1", "b1", never)


def test_holder_round_trip_and_redacted_command():
    h = holder()
    assert Holder.decode(h.encode()) == h
    assert Holder.decode(b"{not json") is None
    line = command_line(["build", "https://u:pw@host/a.nitf?token=SEKRET", "--work", "w"])
    assert "SEKRET" not in line and "pw" not in line and line.startswith("sarlo build")
    assert process_start(os.getpid()) and process_start(2**22 + 12345) is None
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    while open(f"/proc/{zombie.pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z":
        time.sleep(0.01)  # exited, not yet reaped: as a killed holder its shell has not waited
    assert process_start(zombie.pid) is None
    zombie.wait()


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_local_lease_is_exclusive_and_released(tmp_path):
    store = Store(str(tmp_path / "work"))
    first = Lease(store, "sarlo build a")
    assert first.acquire() == ""
    lease_file = tmp_path / "work" / LEASE_NAME
    assert json.loads(lease_file.read_text())["pid"] == os.getpid()
    with pytest.raises(LeaseHeld) as err:
        Lease(store, "sarlo build b").acquire()
    assert f"pid {os.getpid()}" in str(err.value) and "sarlo build a" in str(err.value)
    assert first.renew()
    first.release()
    assert not lease_file.exists()
    with held([store, store], "sarlo build c") as leases:  # one store named twice: one lease
        assert len(leases) == 1 and lease_file.exists()
    assert not lease_file.exists()
    assert not list((tmp_path / "work").iterdir())  # nothing else left behind


def test_local_lease_of_a_dead_process_is_taken_over(tmp_path):
    store = Store(str(tmp_path))
    pid = _dead_pid()
    dead = holder(host=socket.gethostname(), boot=boot_id(), pid=pid, pid_start="1")
    (tmp_path / LEASE_NAME).write_bytes(dead.encode())
    lease = Lease(store, "sarlo build")
    note = lease.acquire()
    assert f"process {pid} is gone" in note
    assert Holder.decode((tmp_path / LEASE_NAME).read_bytes()).pid == os.getpid()
    lease.release()


def test_s3_lease_contention(s3):
    """On moto's S3: a conditional PUT creates the lease, a second command is refused, a
    stale lease from another host is replaced with If-Match, release removes it."""
    import s3fs

    store = Store("s3://sarlo/work", s3)
    first = Lease(store, "sarlo build a")
    assert first.acquire() == ""
    with pytest.raises(LeaseHeld) as err:
        Lease(store, "sarlo build b").acquire()
    assert "sarlo build a" in str(err.value)
    assert first.renew() and first.renew()
    fs = s3fs.S3FileSystem(**s3)
    path = f"sarlo/work/{LEASE_NAME}"
    assert Holder.decode(fs.cat_file(path)).token == first.holder.token
    first.release()
    assert not fs.exists(path)
    # another host's lease, last renewed an hour ago: taken over
    fs.pipe_file(path, holder(host="elsewhere", renewed=time.time() - 3600).encode())
    second = Lease(store, "sarlo build c")
    assert "not renewed for 3600 s" in second.acquire()
    # the replaced holder can no longer renew or remove it
    assert Holder.decode(fs.cat_file(path)).token == second.holder.token
    second.release()
    # another host's lease renewed just now: refused
    fs.pipe_file(path, holder(host="elsewhere", renewed=time.time()).encode())
    with pytest.raises(LeaseHeld, match="host elsewhere, pid 42"):
        Lease(store, "sarlo build d").acquire()


def _sarlo(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "sarlo_dask.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its workers with it: killpg reaches them
        **kwargs,
    )


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            try:
                return json.loads(path.read_text())
            except ValueError:
                pass
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError(f"{path} never appeared")


def _build_args(release_setup, tmp_path):
    _, urls, config = release_setup
    work, out = tmp_path / "work", tmp_path / "out"
    args = ["build", urls[0], "--work", str(work), "--out", str(out)]
    return args + ["--config", str(config), "--workers", "1"], work, out


def test_concurrent_builds_second_exits_5(release_setup, tmp_path):
    """Two `sarlo build` on one --work/--out: the second stops with exit 5 and the holder's
    line before any cluster starts; the first completes as usual."""
    args, work, out = _build_args(release_setup, tmp_path)
    first = _sarlo(*args)
    lease = _wait_for(work / LEASE_NAME, first)
    second = _sarlo(*args)
    out2, err2 = second.communicate(timeout=120)
    out1, err1 = first.communicate(timeout=600)
    assert second.returncode == 5, out2 + err2
    line = err2.strip()
    assert "\n" not in line and line.startswith("error: ")
    for part in (f"host {lease['host']}", f"pid {first.pid}", lease["started"], "sarlo build"):
        assert part in line, line
    assert "dashboard" not in out2  # no cluster was started
    assert first.returncode == 0, out1 + err1
    assert lease["pid"] == first.pid
    assert not (work / LEASE_NAME).exists() and not (out / LEASE_NAME).exists()
    assert json.loads((out / "manifest.json").read_text())["samples"] > 0


def test_killed_holder_is_taken_over(release_setup, tmp_path):
    """kill -9 of a build holding the lease, then the same command: it takes the lease over
    (the holder's pid is gone) and completes; no manual step."""
    import signal

    args, work, out = _build_args(release_setup, tmp_path)
    first = _sarlo(*args)
    lease = _wait_for(out / LEASE_NAME, first)  # the second lease: both are held
    os.killpg(first.pid, signal.SIGKILL)
    first.communicate(timeout=60)
    assert first.returncode == -signal.SIGKILL  # the fault happened
    assert lease["pid"] == first.pid and (work / LEASE_NAME).exists()
    again = _sarlo(*args)
    out2, err2 = again.communicate(timeout=600)
    assert again.returncode == 0, out2 + err2
    assert f"took over the lease of {work}" in out2 and f"process {first.pid} is gone" in out2
    assert not (work / LEASE_NAME).exists() and not (out / LEASE_NAME).exists()


def test_stale_lease_of_another_host_is_taken_over_and_fresh_one_refused(release_setup, tmp_path):
    """A lease from another host: refused while renewed, taken over once not renewed for
    longer than the TTL (here a `sarlo standardize` on the work store)."""
    _, urls, config = release_setup
    work = tmp_path / "work"
    work.mkdir()
    args = ["standardize", urls[0], "--work", str(work), "--config", str(config)]
    args += ["--workers", "1"]
    other = holder(host="node-17", renewed=time.time(), command="sarlo tiles --work w")
    (work / LEASE_NAME).write_bytes(other.encode())
    refused = _sarlo(*args)
    out, err = refused.communicate(timeout=120)
    assert refused.returncode == 5 and "host node-17, pid 42" in err, out + err
    assert "dashboard" not in out
    (work / LEASE_NAME).write_bytes(holder(host="node-17", renewed=time.time() - 3600).encode())
    taken = _sarlo(*args)
    out, err = taken.communicate(timeout=600)
    assert taken.returncode == 0, out + err
    assert re.search(r"node-17.*not renewed for 36\d\d s", out), out
    assert not (work / LEASE_NAME).exists()


def test_cli_refused_on_s3_lease(s3, release_setup, tmp_path):
    """A live lease object on S3 stops `sarlo build` with exit 5, before any cluster."""
    import s3fs

    _, urls, config = release_setup
    fs = s3fs.S3FileSystem(**s3)
    fs.pipe_file(f"sarlo/out/{LEASE_NAME}", holder(host="node-3", renewed=time.time()).encode())
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    env["AWS_ENDPOINT_URL"] = s3["client_kwargs"]["endpoint_url"]
    run = _sarlo(
        "build", urls[0], "--work", "s3://sarlo/work", "--out", "s3://sarlo/out",
        "--config", str(config), env=env,
    )  # fmt: skip
    out, err = run.communicate(timeout=120)
    assert run.returncode == 5, out + err
    assert "s3://sarlo/out is in use" in err and "host node-3" in err
    assert "dashboard" not in out
    # the work lease it took first was given back
    assert not fs.exists(f"sarlo/work/{LEASE_NAME}")


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_interrupted_command_removes_its_lease(release_setup, tmp_path, sig):
    """Ctrl-C (SIGINT) or SIGTERM while the cluster runs: the command ends and its lease is
    gone, so the next command needs no take-over."""
    import signal

    _, urls, config = release_setup
    work = tmp_path / "work"
    run = _sarlo(
        "standardize", urls[0], "--work", str(work), "--config", str(config), "--workers", "1"
    )
    lease = _wait_for(work / LEASE_NAME, run)
    deadline = time.monotonic() + 120
    while "dashboard" not in (line := run.stdout.readline()):  # the cluster is up
        assert line or run.poll() is None
        assert time.monotonic() < deadline
    os.kill(run.pid, getattr(signal, sig))
    out, err = run.communicate(timeout=120)
    assert run.returncode != 0 and lease["pid"] == run.pid  # it was stopped, not finished
    assert not (work / LEASE_NAME).exists(), out + err
