"""Builds on clusters users run: a scheduler address with a GPU worker, elastic workers."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from sarlo_dask.stages.caption_stage import batches_run

from .helpers import build_meanwhile, tree


def _wait_for(path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.1)


def test_build_on_a_scheduler_address_puts_captions_on_the_gpu_worker(
    release_setup, release_built, tmp_path
):
    """`dask scheduler` and two `dask worker` processes, one declaring GPU=1 (a CPU here):
    the build through `--cluster tcp://...` captions only there and gives the same bytes."""
    from distributed import Client

    out_ref, _ = release_built
    _, urls, config = release_setup
    sf = tmp_path / "scheduler.json"
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_scheduler", "--scheduler-file", str(sf),
             "--port", "0", "--dashboard-address", ":0", "--host", "127.0.0.1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
    ]  # fmt: skip
    try:
        _wait_for(sf)
        address = json.loads(sf.read_text())["address"]
        for extra in (["--resources", "GPU=1", "--name", "gpu"], ["--name", "cpu"]):
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "distributed.cli.dask_worker", address,
                     "--nthreads", "1", "--nworkers", "1", "--host", "127.0.0.1", *extra],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )
            )  # fmt: skip
        with Client(address) as client:
            client.wait_for_workers(2, timeout=60)
            work, out = tmp_path / "work", tmp_path / "out"
            run = subprocess.run(
                [sys.executable, "-m", "sarlo_dask.cli", "build", *urls, "--work", str(work),
                 "--out", str(out), "--config", str(config), "--cluster", address],
                capture_output=True, text=True, timeout=600,
            )  # fmt: skip
            assert run.returncode == 0, run.stdout + run.stderr
            runs = client.run(batches_run)
            names = {a: w["name"] for a, w in client.scheduler_info()["workers"].items()}
        by_name = {names[a]: n for a, n in runs.items()}
        assert by_name["gpu"] > 0 and by_name["cpu"] == 0, by_name
        assert tree(out) == tree(out_ref)
    finally:
        for p in procs[::-1]:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)


def test_workers_joining_and_leaving_mid_build_change_nothing(
    release_setup, release_built, tmp_path
):
    """A LocalCluster scaled from 1 to 3 workers and back to 1 while it builds."""
    from distributed import Client, LocalCluster

    out_ref, _ = release_built
    _, urls, config = release_setup
    work, out = tmp_path / "work", tmp_path / "out"
    with (
        LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        result = build_meanwhile(
            client,
            urls,
            work,
            out,
            config,
            [
                ("scenes/*.done.json", lambda: cluster.scale(3)),
                ("tiles/*/*.meta.json", lambda: cluster.scale(1)),
            ],
        )
        assert len(cluster.workers) == 1
    assert result.exit_code() == 0, result
    assert tree(out) == tree(out_ref)


ROOT = Path(__file__).resolve().parents[1]


def test_slurm_job_script_from_cluster_jobqueue_yaml():
    """The job script dask-jobqueue writes from cluster/jobqueue.yaml: a GPU per job, a
    dask-cuda worker declaring the GPU resource."""
    import pytest

    pytest.importorskip("dask_jobqueue")
    import dask

    from sarlo_dask.driver.cluster import slurm_cluster

    # the scheduler on the loopback: by default dask-jobqueue binds it to the address this
    # host reaches the internet by, found by aiming a UDP socket at 8.8.8.8
    with dask.config.set({"jobqueue.slurm.scheduler-options": {"host": "127.0.0.1"}}):
        cluster = slurm_cluster(str(ROOT / "cluster" / "jobqueue.yaml"))
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    lines = script.splitlines()
    assert lines[0].startswith("#!")
    assert "#SBATCH --gres=gpu:1" in lines and "#SBATCH -p gpu" in lines
    assert "#SBATCH -t 04:00:00" in lines and "#SBATCH -J sarlo-worker" in lines
    command = next(line for line in lines if "dask_cuda.cli worker" in line)
    assert "--resources GPU=1" in command and "--nthreads 8" in command
    assert any("activate sarlo" in line for line in lines)
    sbatch = (ROOT / "cluster" / "sbatch-build.sh").read_text()
    assert "sarlo build" in sbatch and "slurm:" in sbatch and "#SBATCH --time" in sbatch


def test_kubernetes_manifests_are_what_the_operator_helpers_build():
    import pytest
    import yaml

    pytest.importorskip("dask_kubernetes")
    sys.path.insert(0, str(ROOT / "cluster"))
    try:
        import kubernetes as recipe  # cluster/kubernetes.py, not the client library
    finally:
        sys.path.pop(0)
    assert recipe.__file__ == str(ROOT / "cluster" / "kubernetes.py")
    cluster = yaml.safe_load((ROOT / "cluster" / "daskcluster.yaml").read_text())
    group = yaml.safe_load((ROOT / "cluster" / "daskworkergroup-gpu.yaml").read_text())
    assert cluster == recipe.cluster_spec() and group == recipe.gpu_worker_group()
    assert cluster["kind"] == "DaskCluster" and group["kind"] == "DaskWorkerGroup"
    assert group["spec"]["cluster"] == cluster["metadata"]["name"]
    (gpu,) = group["spec"]["worker"]["spec"]["containers"]
    assert gpu["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert gpu["args"][:5] == ["dask", "cuda", "worker", "--resources", "GPU=1"]
    dockerfile = (ROOT / "cluster" / "Dockerfile").read_text()
    assert ".[gpu,caption,cluster]" in dockerfile
