"""The driver on the session's 2-process cluster: every unit's outcome comes back typed and
once, a failing or lost unit never raises out of it, units added while it runs start as
their predecessors complete, and no more than its limit are ever on the cluster."""

from __future__ import annotations

import os
import time
from itertools import pairwise
from pathlib import Path

import pytest

from sarlo_dask.driver.loop import Done, Driver, Failed, Key, Unit


def _stay(folder: str, name: str, seconds: float) -> str:
    """A unit that records when it ran, on which worker process."""
    start = time.time()
    time.sleep(seconds)
    Path(folder, name).write_text(f"{start} {time.time()} {os.getpid()}")
    return name


def _fail(why: str) -> None:
    raise ValueError(why)


def _die() -> None:
    os._exit(1)  # the worker process ends: the unit is lost with it


def test_outcomes_are_typed_and_failures_never_raise(client, tmp_path):
    drive = Driver(client)
    drive.add(Unit(Key("t", "ok", ("a",)), _stay, (str(tmp_path), "ok", 0.0), tag="ok"))
    drive.add(Unit(Key("t", "bad", ("a",)), _fail, ("no such thing",), tag="bad"))
    outcomes = {o.unit.tag: o for o in drive}
    assert isinstance(outcomes["ok"], Done) and outcomes["ok"].value == "ok"
    assert isinstance(outcomes["bad"], Failed)
    assert str(outcomes["bad"].error) == "no such thing"
    assert drive.done == drive.added == 2 and not drive.in_flight
    # a unit that kills every worker it runs on (alone: the scheduler gives up on the units
    # that were on a dying worker too); the driver yields its failure and goes on
    drive = Driver(client)
    drive.add(Unit(Key("t", "lost", ("a",)), _die, retries=0, tag="lost"))
    seen = []
    for outcome in drive:
        seen.append(outcome)
        if outcome.unit.tag == "lost":
            client.wait_for_workers(2, timeout=60)  # the nannies restarted them
            drive.add(Unit(Key("t", "after", ("a",)), _stay, (str(tmp_path), "after", 0.0)))
    lost, after = seen
    assert isinstance(lost, Failed) and type(lost.error).__name__ == "KilledWorker", lost
    assert isinstance(after, Done) and after.value == "after"


def test_at_most_limit_units_are_on_the_cluster_and_added_units_start_as_others_end(
    client, tmp_path
):
    told: list[tuple[int, int]] = []
    drive = Driver(client, progress=lambda done, added: told.append((done, added)), limit=1)
    for i in range(4):
        drive.add(
            Unit(
                Key("t", f"first{i}", (str(tmp_path),)),
                _stay,
                (str(tmp_path), f"first{i}", 0.2),
                tag=i,
            )
        )
    seen, most = [], 0
    for outcome in drive:
        assert isinstance(outcome, Done)
        most = max(most, len(drive.in_flight))
        seen.append(outcome.value)
        if outcome.value.startswith("first"):  # each completion starts its next step
            n = outcome.value[len("first") :]
            drive.add(
                Unit(
                    Key("t", f"then{n}", (str(tmp_path),)), _stay, (str(tmp_path), f"then{n}", 0.0)
                )
            )
    assert sorted(seen) == sorted([f"first{i}" for i in range(4)] + [f"then{i}" for i in range(4)])
    spans = sorted(
        tuple(map(float, p.read_text().split()[:2])) for p in tmp_path.iterdir() if p.is_file()
    )
    # limit 1 on 2 worker processes: the units ran one after the other, never two at once
    assert all(end <= nxt_start + 0.01 for (_, end), (nxt_start, _) in pairwise(spans))
    assert most <= 1
    assert told[-1] == (8, 8) and all(d <= a for d, a in told)
    assert [d for d, _ in told] == sorted(d for d, _ in told)


def test_a_limit_below_one_is_refused(client):
    with pytest.raises(ValueError, match="at least 1"):
        Driver(client, limit=0)


def test_a_worker_keeps_its_state_in_its_plugin(client):
    """WorkerState on every worker: a table's entries made once per worker and kept to their
    size, the last used kept; a process that is not a worker has its own."""
    from sarlo_dask.driver.worker_state import WorkerState, state_sizes, worker_state

    client.register_plugin(WorkerState())

    def fill(n: int) -> list[int]:
        state = worker_state()
        made = []
        for i in [0, 1, 2, 0, 3, 4]:  # 0 used again: kept when 1 and 2 go
            state.memo("t", i, lambda i=i: made.append(i) or i, size=n)
        return [*made, *sorted(state.tables["t"])]

    workers = list(client.scheduler_info()["workers"])
    futures = [client.submit(fill, 3, workers=[w], pure=False) for w in workers]
    got = dict(zip(workers, client.gather(futures), strict=True))  # a task on each worker
    assert len(got) == 2
    for made in got.values():
        assert made == [0, 1, 2, 3, 4, 0, 3, 4]  # each made once; 1 and 2 dropped
    assert all(s["t"] == 3 for s in client.run(state_sizes).values())
    assert "t" not in worker_state().tables  # this process is no worker: its own tables


def _wait_for(name: str, leave: bool, timeout: float) -> bool:
    from distributed import Event

    from sarlo_dask.driver.cluster import off_the_thread_pool

    with off_the_thread_pool(leave):
        return Event(name).wait(timeout)


def _set(name: str) -> None:
    from distributed import Event

    Event(name).set()


@pytest.mark.parametrize("leave", [True, False])
def test_a_task_waiting_on_another_machine_frees_its_workers_thread(client, leave):
    """A caption task of a server backend (CaptionBackend.remote) waits inside
    off_the_thread_pool: on a worker of one thread, another task runs meanwhile and ends the
    wait. Without it (leave False) the other task cannot start until the wait times out."""
    from uuid import uuid4

    from sarlo_dask.captions.backend import TransformersBackend
    from sarlo_dask.captions.openai_server import OpenAIBackend

    assert OpenAIBackend.remote and not TransformersBackend.remote
    worker = sorted(client.scheduler_info()["workers"])[0]
    assert client.scheduler_info()["workers"][worker]["nthreads"] == 1
    name = f"go-{uuid4().hex}"
    waiting = client.submit(_wait_for, name, leave, 5 if leave else 2, workers=[worker], pure=False)
    time.sleep(0.5)  # the wait has started and holds (or left) the worker's one thread
    setter = client.submit(_set, name, workers=[worker], pure=False)
    assert waiting.result(timeout=30) is leave  # set in time only when the thread was freed
    setter.result(timeout=30)
