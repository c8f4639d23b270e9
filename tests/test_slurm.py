"""Builds through a real SLURM: munge, slurmctld and slurmd started here by
cluster/slurm-local.sh (one node, a GPU declared as a GRES), worker jobs submitted by
dask-jobqueue from the cluster/ YAML files, the client job cluster/sbatch-build.sh. No mock
scheduler: a machine where SLURM cannot start fails these tests (SARLO_SKIP_SLURM=1 skips
them, for a machine without root or Debian's packages)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from .helpers import free_port, tree

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "cluster" / "slurm-local.sh"
SARLO = str(Path(sys.executable).parent / "sarlo")

pytestmark = pytest.mark.skipif(
    os.environ.get("SARLO_SKIP_SLURM") == "1", reason="SARLO_SKIP_SLURM=1"
)


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """A running one-node SLURM; SLURM_CONF set for this process and what it starts."""
    folder = tmp_path_factory.mktemp("slurm")
    env = {**os.environ, "SLURMCTLD_PORT": str(free_port()), "SLURMD_PORT": str(free_port())}
    subprocess.run(["bash", str(SCRIPT), "install"], check=True, timeout=600)
    run = subprocess.run(
        ["bash", str(SCRIPT), "start", str(folder)], env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, f"SLURM did not start:\n{run.stdout}\n{run.stderr}"
    before = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(folder / "slurm.conf")
    yield folder
    subprocess.run(["scancel", "--user", "root"], check=False)
    subprocess.run(["bash", str(SCRIPT), "stop", str(folder)], check=False)
    if before is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = before


class Jobs:
    """Every job squeue shows while it runs, with the states it went through."""

    def __init__(self) -> None:
        self.states: dict[str, list[str]] = {}
        self.names: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            out = subprocess.run(
                ["squeue", "-h", "-o", "%i %j %T"], capture_output=True, text=True
            ).stdout
            for line in out.splitlines():
                job, name, state = line.split()
                self.names[job] = name
                seen = self.states.setdefault(job, [])
                if not seen or seen[-1] != state:
                    seen.append(state)
            time.sleep(0.3)

    def running(self, name: str) -> list[str]:
        return [j for j, s in self.states.items() if self.names[j] == name and "RUNNING" in s]

    def stop(self, test: str) -> None:
        """Stop watching; the jobs seen go to the suite's closing summary."""
        from .conftest import SLURM_JOBS

        self._stop.set()
        self._thread.join()
        for job, states in sorted(self.states.items(), key=lambda kv: int(kv[0])):
            final = job_state(job)
            line = f"{test}: job {job} ({self.names[job]}): {' -> '.join(states)} -> {final}"
            SLURM_JOBS.append(line)
            print(line)


def job_state(job: str) -> str:
    out = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True)
    m = re.search(r"JobState=(\w+)", out.stdout)
    return m.group(1) if m else "gone"


def jobqueue_yaml(tmp: Path, source: str = "jobqueue-cpu.yaml", **changes) -> Path:
    """cluster/SOURCE as this machine needs it: the scheduler on the loopback (the netguard
    refuses the outward address jobqueue would find), the test's Python (no conda env to
    activate), logs and local folders under tmp; `changes` as a user adapts the file."""
    settings = yaml.safe_load((ROOT / "cluster" / source).read_text())
    slurm = settings["jobqueue"]["slurm"]
    slurm["job-script-prologue"] = [
        line for line in slurm["job-script-prologue"] if "activate" not in line
    ]
    slurm |= {
        "local-directory": str(tmp / "dask"),
        "log-directory": str(tmp / "logs"),
        "scheduler-options": {"host": "127.0.0.1"},
        "python": sys.executable,
        **changes,
    }
    path = tmp / source
    path.write_text(yaml.safe_dump(settings))
    return path


def _wait(what, timeout: float = 120, step: float = 0.3):
    deadline = time.monotonic() + timeout
    while not (got := what()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(step)
    return got


def test_a_build_on_slurm_worker_jobs_one_cancelled_gives_the_local_bytes(
    slurm, release_setup, release_built, tmp_path
):
    """`sarlo build --cluster slurm:jobqueue-cpu.yaml --workers 2`: dask-jobqueue submits
    worker jobs (adaptive: the second once there is work for it); one is scancel'ed once the
    build is under way; the build finishes, on the job left or a replacement, with the
    bytes of the local build."""
    _, urls, config = release_setup
    work, out = tmp_path / "work", tmp_path / "out"
    queue = jobqueue_yaml(tmp_path)
    cmd = [SARLO, "build", *urls, "--work", str(work), "--out", str(out), "--config"]
    cmd += [str(config), "--cluster", f"slurm:{queue}", "--workers", "2"]
    jobs = Jobs()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        running = _wait(lambda: len(jobs.running("sarlo-worker")) >= 2 or None)
        assert running
        _wait(lambda: any((work / "tiles").glob("*/*.meta.json")) or proc.poll() is not None)
        assert proc.poll() is None, "the build ended before a worker job could be cancelled"
        victim = sorted(jobs.running("sarlo-worker"), key=int)[0]
        subprocess.run(["scancel", victim], check=True)
        output, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
        jobs.stop("build, one job cancelled")
    assert proc.returncode == 0, output[-3000:]
    assert job_state(victim) == "CANCELLED"
    assert tree(out) == tree(release_built[0])


def test_adaptive_scaling_adds_and_removes_worker_jobs(slurm, tmp_path):
    """A burst of tasks adds worker jobs up to the maximum; idle, they are removed."""
    from distributed import Client

    from sarlo_dask.driver.cluster import slurm_cluster

    jobs = Jobs()
    cluster = slurm_cluster(str(jobqueue_yaml(tmp_path)))
    try:
        cluster.adapt(minimum=0, maximum=2, interval="500ms", wait_count=2)
        with Client(cluster) as client:
            futures = client.map(time.sleep, [1.0] * 8, pure=False)
            _wait(lambda: len(jobs.running("sarlo-worker")) >= 2 or None, timeout=90)
            client.gather(futures)
            del futures  # nothing held in the workers: idle, they may go
            _wait(
                lambda: (
                    not [j for j in jobs.running("sarlo-worker") if job_state(j) == "RUNNING"]
                    or None
                ),
                timeout=90,
            )
    finally:
        cluster.close()
        jobs.stop("adaptive")
    added = jobs.running("sarlo-worker")
    assert len(added) >= 2 and all(job_state(j) != "RUNNING" for j in added)


def test_the_client_job_cut_by_its_time_limit_resubmitted_completes(
    slurm, release_setup, release_built, tmp_path
):
    """cluster/sbatch-build.sh as a user submits it; once the build is under way its time
    limit is cut to what it has used (slurmctld ends it: TIMEOUT); the same command again
    resumes and gives the local build's bytes."""
    _, urls, config = release_setup
    work, out = tmp_path / "work", tmp_path / "out"
    env = {
        **os.environ,
        "SARLO_ACTIVATE": f"source {Path(sys.executable).parent / 'activate'}",
        "SARLO_JOBQUEUE": str(jobqueue_yaml(tmp_path)),
        "SARLO_CONFIG": str(config),
        "SARLO_WORKERS": "2",
    }
    listing = tmp_path / "scenes.txt"  # the release's scenes, as a list file
    listing.write_text("\n".join(urls) + "\n")
    inputs = str(listing)
    submit = ["sbatch", "--parsable", "--cpus-per-task=1", "--mem=2G", "--time=10"]
    submit += [str(ROOT / "cluster" / "sbatch-build.sh"), inputs, str(work), str(out)]
    jobs = Jobs()
    try:
        first = subprocess.run(
            submit, cwd=tmp_path, env=env, capture_output=True, text=True, check=True
        ).stdout.strip()
        _wait(lambda: any((work / "scenes").glob("*.zarr")) or None, timeout=180)
        assert job_state(first) == "RUNNING"
        # the workers held (SIGSTOP through SLURM) so that the build cannot end before
        # slurmctld's next time-limit sweep (every 30 s) ends the client job
        held: set[str] = set()

        def hold_workers_until_cut() -> bool:
            for job in set(jobs.running("sarlo-worker")) - held:
                if job_state(job) == "RUNNING":
                    subprocess.run(["scontrol", "suspend", job], check=True)
                    held.add(job)
            return job_state(first) not in ("RUNNING", "COMPLETING")

        hold_workers_until_cut()
        subprocess.run(["scontrol", "update", f"JobId={first}", "TimeLimit=0:01"], check=True)
        _wait(hold_workers_until_cut, timeout=120)
        assert job_state(first) == "TIMEOUT", job_state(first)
        assert not (out / "manifest.json").exists()  # cut before the release was done
        # its worker jobs lose their scheduler and end; the user submits the same again
        subprocess.run(["scancel", "--name", "sarlo-worker"], check=False)
        second = subprocess.run(
            submit, cwd=tmp_path, env=env, capture_output=True, text=True, check=True
        ).stdout.strip()
        _wait(
            lambda: job_state(second) not in ("PENDING", "RUNNING", "COMPLETING") or None,
            timeout=600,
        )
    finally:
        jobs.stop("client job cut")
    log = (tmp_path / f"sarlo-build-{second}.out").read_text()
    assert job_state(second) == "COMPLETED", log[-3000:]
    assert "already" in log  # it resumed: stages found their earlier results
    assert tree(out) == tree(release_built[0])


def test_the_gpu_job_script_runs_and_captions_land_on_its_worker(
    slurm, release_setup, release_built, tmp_path
):
    """cluster/jobqueue.yaml's job (a GPU GRES, the gpu partition, the GPU resource declared)
    adapted to this node (memory, cores, a plain worker: dask-cuda is the gpu extra): the
    real slurmctld accepts and runs it; a CPU worker job beside it; the build through the
    scheduler captions only on the GPU job's worker and gives the local bytes."""
    from distributed import Client

    from sarlo_dask.driver.cluster import slurm_cluster
    from sarlo_dask.stages.caption_stage import batches_run

    _, urls, config = release_setup
    queue = jobqueue_yaml(
        tmp_path,
        "jobqueue.yaml",
        memory="4GB",
        cores=1,
        **{
            "worker-command": "distributed.cli.dask_worker",
            "worker-extra-args": ["--resources", "GPU=1"],
        },
    )
    jobs = Jobs()
    cluster = slurm_cluster(str(queue))
    script = cluster.job_script()
    assert "#SBATCH --gres=gpu:1" in script and "#SBATCH -p gpu" in script
    try:
        cluster.scale(1)
        cpu = subprocess.run(
            ["sbatch", "--parsable", "-J", "sarlo-cpu-worker", "--mem=4G", "-o",
             str(tmp_path / "cpu-worker-%j.out"), "--wrap",
             f"{sys.executable} -m distributed.cli.dask_worker {cluster.scheduler_address} "
             "--nthreads 1 --name cpu --host 127.0.0.1"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        with Client(cluster) as client:
            client.wait_for_workers(2, timeout=120)
            gpu_job = jobs.running("sarlo-worker")
            detail = subprocess.run(
                ["scontrol", "show", "job", gpu_job[0]], capture_output=True, text=True
            ).stdout
            assert re.search(r"gres[/:]gpu[:=]1", detail) and "Partition=gpu" in detail, detail
            work, out = tmp_path / "work", tmp_path / "out"
            run = subprocess.run(
                [SARLO, "build", *urls, "--work", str(work), "--out", str(out), "--config",
                 str(config), "--cluster", cluster.scheduler_address],
                capture_output=True, text=True, timeout=600,
            )  # fmt: skip
            assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
            runs = client.run(batches_run)
            gpu = {a for a, w in client.scheduler_info()["workers"].items() if w["resources"]}
        assert all(runs[a] > 0 for a in gpu) and len(gpu) == 1
        assert all(n == 0 for a, n in runs.items() if a not in gpu), runs
        assert tree(out) == tree(release_built[0])
    finally:
        cluster.close()
        subprocess.run(["scancel", cpu], check=False)
        jobs.stop("GPU job")
