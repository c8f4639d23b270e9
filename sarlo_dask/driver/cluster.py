"""Dask clusters by name: local (default), local-cuda, slurm, kubernetes, or an address."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
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
        with interrupts_ignored():  # the workers start ignoring Ctrl-C: the driver handles it
            local = LocalCluster(
                n_workers=n_workers or local_workers(),
                threads_per_worker=1,
                processes=True,
                memory_limit=memory_limit or "auto",
                dashboard_address=":0",
            )
        client = Client(local)
        ignore_interrupts_on_workers(client)
        return client
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


class QuietRefusals(logging.Filter):
    """Drops a worker's "Compute Failed" traceback for an expected refusal (a SceneError):
    the client records it as one line with its reason; other errors keep their traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        refusal = len(args) >= 4 and str(args[3]).startswith("SceneError(")
        # a record redact_logs rewrote holds its message whole, without args
        refusal = refusal or "\nException: SceneError(" in str(record.msg)
        return not (str(record.msg).startswith("Compute Failed") and refusal)


def quiet_refusals() -> None:
    """Install QuietRefusals on this process's worker logger (once), and redact_logs."""
    redact_logs()
    logger = logging.getLogger("distributed.worker")
    if not any(isinstance(f, QuietRefusals) for f in logger.filters):
        logger.addFilter(QuietRefusals())


@contextlib.contextmanager
def cluster_client(
    cluster: str = "local", n_workers: int | None = None, memory_limit: str | None = None
) -> Iterator[Any]:
    """`make_client`'s client for the block; then the client closed, and the cluster it
    started (a cluster left to the interpreter's exit has its workers killed, with warnings)."""
    client = make_client(cluster, n_workers, memory_limit)
    try:
        yield client
    finally:
        started = getattr(client, "cluster", None)  # None: a scheduler that was there before
        client.close()
        if started is not None:
            # the work is done: a worker slow to exit on a busy machine is killed, unsaid
            nanny = logging.getLogger("distributed.nanny")
            level = nanny.level
            nanny.setLevel(logging.ERROR)
            try:
                started.close()
            finally:
                nanny.setLevel(level)


@contextlib.contextmanager
def interrupts_ignored() -> Iterator[None]:
    """SIGINT ignored while the block runs, so processes started in it inherit SIG_IGN (a
    terminal's Ctrl-C reaches the whole process group: the local workers too)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def _ignore_interrupts() -> None:
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def ignore_interrupts_on_workers(client: Any) -> None:
    """Local workers, restarted ones too, ignore Ctrl-C: the command interrupted says how to
    resume and closes its cluster, with no traceback from each worker."""
    from distributed.diagnostics.plugin import WorkerPlugin

    class IgnoreInterrupts(WorkerPlugin):
        name = "sarlo-ignore-interrupts"

        def setup(self, worker: Any) -> None:
            _ignore_interrupts()

    client.register_plugin(IgnoreInterrupts(), name=IgnoreInterrupts.name)


def redact_logs() -> None:
    """Every log record this process makes from now on has its secrets masked
    (errors.redact_text), its traceback too: a worker logs a failed task with its arguments,
    which hold the input's URL. Installed once per process (the CLI, each worker)."""
    import traceback

    from sarlo_dask.errors import redact_text

    make = logging.getLogRecordFactory()
    if getattr(make, "sarlo_redacts", False):
        return

    def redacting(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make(*args, **kwargs)
        try:
            text = record.getMessage()
        except Exception:  # a malformed record: logging reports it as it would
            return record
        if (clean := redact_text(text)) != text:
            record.msg, record.args = clean, ()
        if record.exc_info and record.exc_info[0] is not None:
            lines = traceback.format_exception(*record.exc_info)
            record.exc_text = redact_text("".join(lines)).rstrip("\n")
        return record

    redacting.sarlo_redacts = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(redacting)


def install_quiet_refusals(client: Any) -> None:
    """On every worker of `client`'s cluster, now and joining later."""
    from distributed.diagnostics.plugin import WorkerPlugin

    class Quiet(WorkerPlugin):
        name = "sarlo-quiet-refusals"

        def setup(self, worker: Any) -> None:
            quiet_refusals()

    client.register_plugin(Quiet(), name=Quiet.name)


def worker_gpus(client: Any) -> list[bool]:
    """Whether each worker of the cluster declares a GPU resource."""
    workers = client.scheduler_info()["workers"].values()
    return [bool(w.get("resources", {}).get("GPU")) for w in workers]


def all_gpus(client: Any) -> bool:
    """Every worker has a GPU: device 'auto' means 'cuda' (tasks may land on any worker)."""
    gpus = worker_gpus(client)
    return bool(gpus) and all(gpus)


def cluster_size(client: Any) -> tuple[int, int]:
    """The cluster's workers and their threads, now."""
    workers = client.scheduler_info()["workers"].values()
    return len(workers), sum(int(w.get("nthreads") or 1) for w in workers)


def worker_memory(client: Any) -> int:
    """The smallest memory a worker of the cluster has for each task it runs at once: its
    memory limit over its threads, in bytes (0: no limit set or known)."""
    workers = client.scheduler_info()["workers"].values()
    limits = [(w.get("memory_limit") or 0) // max(1, w.get("nthreads") or 1) for w in workers]
    return min(limits) if limits and all(limits) else 0


@contextlib.contextmanager
def off_the_thread_pool(leave: bool = True) -> Iterator[None]:
    """Within a task (and `leave`): its worker thread is given back to the worker for the
    block's duration (Dask's secede / rejoin), so that other tasks run while this one waits
    on another machine; outside a worker, or not `leave`: nothing."""
    if leave:
        from distributed import get_worker, rejoin, secede
        from distributed.threadpoolexecutor import thread_state

        try:
            get_worker()
        except ValueError:
            leave = False
        leave = leave and getattr(thread_state, "proceed", True)  # not out already (nested)
    if not leave:
        yield
        return
    secede()
    try:
        yield
    finally:
        rejoin()
