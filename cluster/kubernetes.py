"""The Kubernetes recipe in Python: the DaskCluster and its GPU worker group, built with the
Dask operator's spec helpers (the same objects as daskcluster.yaml and
daskworkergroup-gpu.yaml).

    python cluster/kubernetes.py --image ghcr.io/sarlo-dask/sarlo-dask:latest > sarlo.yaml
    kubectl apply -f sarlo.yaml

or, from a pod with cluster credentials, let the operator manage it from Python:

    from cluster.kubernetes import cluster_spec
    from dask_kubernetes.operator import KubeCluster
    kc = KubeCluster(custom_cluster_spec=cluster_spec(image))
    kc.add_worker_group(**GPU_GROUP)
"""

from __future__ import annotations

import argparse
from typing import Any

IMAGE = "ghcr.io/sarlo-dask/sarlo-dask:latest"
CPU = {"requests": {"cpu": "4", "memory": "16Gi"}, "limits": {"cpu": "4", "memory": "16Gi"}}
GPU = {"limits": {"nvidia.com/gpu": 1, "cpu": "8", "memory": "64Gi"}}
GPU_COMMAND = "dask cuda worker --resources GPU=1 --rmm-pool-size 0.5"


WORKER_ENV = {"MALLOC_MMAP_THRESHOLD_": "67108864"}
"""glibc's mmap threshold at 64 MiB: see sarlo_dask/__init__.py (Dask pins it at 128 KiB)"""


def cluster_spec(image: str = IMAGE, n_workers: int = 4) -> dict[str, Any]:
    """The DaskCluster: a scheduler and CPU workers (tiles, resampling)."""
    from dask_kubernetes.operator import make_cluster_spec

    spec: dict[str, Any] = make_cluster_spec(
        name="sarlo",
        image=image,
        n_workers=n_workers,
        resources=CPU,
        env={"HF_HUB_OFFLINE": "1", **WORKER_ENV},
    )
    return spec


def gpu_worker_group(image: str = IMAGE, n_workers: int = 2) -> dict[str, Any]:
    """The DaskWorkerGroup of GPU workers (captioning, CuPy resampling)."""
    from dask_kubernetes.operator import make_worker_spec

    return {
        "apiVersion": "kubernetes.dask.org/v1",
        "kind": "DaskWorkerGroup",
        "metadata": {"name": "sarlo-gpu"},
        "spec": {
            "cluster": "sarlo",
            "worker": make_worker_spec(
                image=image,
                n_workers=n_workers,
                resources=GPU,
                env={"HF_HUB_OFFLINE": "0", **WORKER_ENV},
                worker_command=GPU_COMMAND,
            ),
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--image", default=IMAGE)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--gpu-workers", type=int, default=2)
    args = ap.parse_args()
    docs = [cluster_spec(args.image, args.workers), gpu_worker_group(args.image, args.gpu_workers)]
    print(dump(docs))


def dump(docs: list[dict[str, Any]]) -> str:
    """YAML documents, written out in full (no anchors for shared parts)."""
    import yaml

    class Plain(yaml.SafeDumper):
        def ignore_aliases(self, data: Any) -> bool:
            return True

    return str(yaml.dump_all(docs, Dumper=Plain, sort_keys=False))


if __name__ == "__main__":
    main()
