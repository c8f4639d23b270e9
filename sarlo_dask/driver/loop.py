"""The driver: the one loop that sends units of work to the Dask cluster and brings back
their typed outcomes, as they complete.

A stage plans `Unit`s (a function and its arguments, or a Dask graph, under a typed `Key`)
and adds them to a `Driver`; iterating the driver yields a `Done` (the unit's value) or a
`Failed` (its exception) for each, never raising: one unit's failure is the stage's to
record. Units may be added while the driver is iterated, so a unit's next step starts as
soon as it completes (a scene's store write as soon as its plan is made, a caption batch as
soon as its tiles are). At most `limit` units are on the cluster at once (backpressure):
the rest wait on the driver, not in the scheduler. This module imports no stage.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")

Progress = Callable[[int, int], None]
"""told (units done, units added) after each change: a progress bar"""


@dataclass(frozen=True)
class Key:
    """A unit's task key: its stage, the unit within the stage and the lineage its result
    depends on (settings digests, the store's token). The same key is the same work (Dask
    runs it once and shares it); another lineage is another task."""

    stage: str
    unit: str
    lineage: tuple[str | None, ...] = ()
    """None: a part of the lineage not known (a store made before it was recorded)"""

    def __str__(self) -> str:
        return "-".join((self.stage, self.unit, *map(str, self.lineage)))


@dataclass(frozen=True, eq=False)
class Unit(Generic[T]):
    """One task of a stage: `run(*args)` on a worker, or `run` itself when it is a Dask
    collection (its graph computed). `tag`: the stage's own handle on the unit (its record)."""

    key: Key
    run: Any
    args: tuple[Any, ...] = ()
    tag: Any = None
    priority: int = 0
    retries: int | None = None
    resources: dict[str, Any] | None = None


@dataclass(frozen=True)
class Done(Generic[T]):
    """A unit that completed, with what it returned."""

    unit: Unit[T]
    value: T


@dataclass(frozen=True)
class Failed:
    """A unit that raised (or was lost with its workers beyond its retries)."""

    unit: Unit[Any]
    error: Exception


Outcome = Done[Any] | Failed


@dataclass(eq=False)
class Driver:
    """Units sent to `client` with at most `limit` in flight (None: no limit); iterate it for
    their outcomes in completion order. `progress` is told (done, added) as they change."""

    client: Any
    progress: Progress | None = None
    limit: int | None = None
    waiting: deque[Unit[Any]] = field(default_factory=deque, init=False)
    in_flight: dict[Any, Unit[Any]] = field(default_factory=dict, init=False)
    added: int = field(default=0, init=False)
    done: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        from distributed import as_completed

        if self.limit is not None and self.limit < 1:
            raise ValueError(f"Driver: limit must be at least 1, not {self.limit}")
        self._queue = as_completed(loop=self.client.loop)

    def add(self, unit: Unit[Any]) -> None:
        """Queue `unit`; it goes to the cluster as soon as the limit allows."""
        self.waiting.append(unit)
        self.added += 1
        self._send()
        self._tell()

    def __iter__(self) -> Iterator[Outcome]:
        while self.in_flight or self.waiting:
            future = next(self._queue)
            unit = self.in_flight.pop(future)
            try:
                outcome: Outcome = Done(unit, future.result())
            except Exception as exc:
                outcome = Failed(unit, exc)
            finally:
                future.release()
            self.done += 1
            self._send()
            yield outcome
            self._tell()  # after the stage has added what this outcome lets start

    def _send(self) -> None:
        while self.waiting and (self.limit is None or len(self.in_flight) < self.limit):
            unit = self.waiting.popleft()
            future = self._submit(unit)
            self.in_flight[future] = unit
            self._queue.add(future)

    def _submit(self, unit: Unit[Any]) -> Any:
        from dask import is_dask_collection

        options: dict[str, Any] = {"priority": unit.priority, "retries": unit.retries}
        if unit.resources is not None:
            options["resources"] = unit.resources
        if is_dask_collection(unit.run):
            return self.client.compute(unit.run, **options)
        key = str(unit.key)
        return self.client.submit(unit.run, *unit.args, key=key, **options)

    def _tell(self) -> None:
        if self.progress is not None:
            self.progress(self.done, self.added)
