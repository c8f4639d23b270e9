"""What a worker keeps between its tasks, in one Dask WorkerPlugin: parsed scene SICDs and
opened scene stores (the tiles of a scene share them), per-host request limiters (every
source and thread of the worker shares one). Set up with the worker, dropped with it, and
seen from the client (`client.run(state_sizes)`); a process that is not a worker keeps its
own. (The caption models have their own plugin: captions.backend.CaptionModels.)"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from distributed.diagnostics.plugin import WorkerPlugin

from sarlo_dask import registry

T = TypeVar("T")
P = TypeVar("P", bound="FilledOnWorker")


class FilledOnWorker(WorkerPlugin):
    """A plugin whose state each worker makes itself: sent to the workers empty (pickled as
    nothing, set up again by __init__ there)."""

    name: str

    def __getstate__(self) -> dict[str, Any]:
        return {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__()  # type: ignore[misc]


def on_worker(kind: type[P], own: P, worker: Any = None) -> P:
    """The `kind` plugin of `worker` (None: the one running this task), or `own` (the
    process's) outside a worker or on a worker the plugin was not registered on."""
    if worker is None:
        try:
            from distributed import get_worker

            worker = get_worker()
        except ValueError:
            return own
    plugin = worker.plugins.get(kind.name)
    return plugin if isinstance(plugin, kind) else own


class WorkerState(FilledOnWorker):
    """Named memo tables, each holding at most the `size` entries last used."""

    name = "sarlo-worker-state"
    idempotent = True  # kept across the builds of one cluster

    def __init__(self) -> None:
        self.tables: dict[str, OrderedDict[Hashable, Any]] = {}
        self.closing: set[str] = set()
        self.lock = threading.Lock()

    def teardown(self, worker: Any) -> None:
        with self.lock:
            dropped = [v for n in self.closing for v in self.tables.get(n, {}).values()]
            self.tables.clear()
        for value in dropped:
            value.close()

    def memo(
        self, table: str, key: Hashable, make: Callable[[], T], size: int = 0, close: bool = False
    ) -> T:
        """The entry `key` of `table`, made once (`size` > 0: the last `size` used kept);
        `close`: the table's entries hold files open, closed (`.close()`) when dropped."""
        with self.lock:
            entries = self.tables.setdefault(table, OrderedDict())
            if close:
                self.closing.add(table)
            if key in entries:
                entries.move_to_end(key)
                return entries[key]
        value = make()  # outside the lock: a store opens, a SICD parses, others go on
        with self.lock:
            kept = entries.setdefault(key, value)
            entries.move_to_end(key)
            dropped = [] if kept is value else [value]  # another thread made it first
            while size and len(entries) > size:
                dropped.append(entries.popitem(last=False)[1])
        for old in dropped if close else ():
            old.close()  # type: ignore[attr-defined]
        return kept


_OWN = WorkerState()
"""the tables of a process that is not a Dask worker (tasks run in process, the client)"""


def worker_state(worker: Any = None) -> WorkerState:
    """The WorkerState of `worker` (None: the one running this task), or the process's own
    outside a worker or on a worker the plugin was not registered on."""
    return on_worker(WorkerState, _OWN, worker)


def state_sizes(dask_worker: Any = None) -> dict[str, int]:
    """Entries per table of this worker (or process); a worker's through client.run."""
    return {name: len(t) for name, t in worker_state(dask_worker).tables.items()}


class SharedKinds(WorkerPlugin):
    """The seams' kinds registered in the client's process (`readers.register`, ...) on
    every worker, those joining later too: a scene reader registered in a notebook reads
    the scenes its tasks open."""

    name = "sarlo-registered-kinds"

    def __init__(self, kinds: dict[str, tuple[type, ...]]) -> None:
        self.kinds = kinds

    def setup(self, worker: Any) -> None:
        registry.share(self.kinds)

    def teardown(self, worker: Any) -> None:
        registry.share({})


def share_registered(client: Any) -> None:
    """Give `client`'s workers the kinds registered in this process (none: none), once per
    client and set of kinds (registering again would tear the plugin down and set it up:
    a task in between would see no kinds). A ValueError when they cannot be sent (a class
    the workers cannot import or unpickle)."""
    kinds = registry.registered_kinds()
    if _SHARED_WITH.get(client.id) == kinds:
        return
    try:
        client.register_plugin(SharedKinds(kinds), name=SharedKinds.name)
    except Exception as exc:
        if not kinds:
            raise
        names = ", ".join(k.__qualname__ for ks in kinds.values() for k in ks)
        raise ValueError(
            f"the kinds registered in this process ({names}) cannot be sent to the workers "
            f"({type(exc).__name__}: {exc}): declare them in an installed package's entry "
            "point group instead"
        ) from None
    _SHARED_WITH[client.id] = kinds


_SHARED_WITH: dict[str, dict[str, tuple[type, ...]]] = {}
"""client id -> the kinds last shared with its workers (a new client's workers: again)"""
