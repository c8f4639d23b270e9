"""Dask clusters by name: local (default), local-cuda, slurm, kubernetes, or an address."""

from __future__ import annotations

import os
from typing import Any


def local_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


def make_client(
    cluster: str = "local", n_workers: int | None = None, memory_limit: str | None = None
) -> Any:
    """A distributed Client for `cluster`.

    local: a LocalCluster of worker processes sized to the machine; local-cuda: dask-cuda, a
    worker per GPU with the GPU resource declared; slurm[:JOBQUEUE_YAML]: dask-jobqueue,
    adaptive up to n_workers jobs; kubernetes[:DASKCLUSTER_YAML]: the Dask operator;
    tcp://host:port or scheduler-file:PATH: an existing scheduler.
    """
    from distributed import Client, LocalCluster

    if cluster.startswith(("tcp://", "tls://", "ucx://")):
        return Client(cluster)
    if cluster.startswith("scheduler-file:"):
        return Client(scheduler_file=cluster.split(":", 1)[1])
    if cluster == "local":
        return Client(
            LocalCluster(
                n_workers=n_workers or local_workers(),
                threads_per_worker=1,
                processes=True,
                memory_limit=memory_limit or "auto",
                dashboard_address=":0",
            )
        )
    if cluster == "local-cuda":
        try:
            from dask_cuda import LocalCUDACluster
        except ImportError:
            raise SystemExit(
                "--cluster local-cuda needs the gpu extra: pip install 'sarlo-dask[gpu]'"
            ) from None
        # CuPy allocates from the RMM pool (gpu.bound_caches), half of each GPU
        return Client(LocalCUDACluster(resources={"GPU": 1}, rmm_pool_size=0.5))
    kind, _, path = cluster.partition(":")
    if kind == "slurm":
        c = slurm_cluster(path or None)
        c.adapt(minimum=1, maximum=n_workers or 1)  # workers come and go with the queue
        return Client(c)
    if kind == "kubernetes":
        try:
            from dask_kubernetes.operator import KubeCluster
        except ImportError:
            raise SystemExit(
                "--cluster kubernetes needs the cluster extra: pip install 'sarlo-dask[cluster]'"
            ) from None
        if path:
            return Client(KubeCluster(custom_cluster_spec=path, n_workers=n_workers or 1))
        return Client(KubeCluster(name="sarlo", n_workers=n_workers or 1))
    raise SystemExit(
        f"unknown --cluster {cluster!r}: use local, local-cuda, slurm[:JOBQUEUE_YAML], "
        "kubernetes[:DASKCLUSTER_YAML], tcp://HOST:PORT or scheduler-file:PATH"
    )


def slurm_cluster(config: str | None = None) -> Any:
    """A dask-jobqueue SLURMCluster, from a jobqueue YAML (cluster/jobqueue.yaml) when given,
    else from the user's dask configuration; no job is submitted until it scales."""
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:
        raise SystemExit(
            "--cluster slurm needs the cluster extra: pip install 'sarlo-dask[cluster]'"
        ) from None
    if config is None:
        return SLURMCluster()
    import yaml

    with open(config) as f:
        settings = (yaml.safe_load(f) or {}).get("jobqueue", {}).get("slurm", {})
    # as keyword arguments: jobqueue reads its dask config again whenever it makes a job
    return SLURMCluster(**{k.replace("-", "_"): v for k, v in settings.items()})
