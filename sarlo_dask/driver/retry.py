"""Asking a server again, politely: how long to wait before a retry (the server's
Retry-After, else exponential backoff) and a per-host request-rate limit for this process.
Used by the optical XYZ source and the caption servers' client."""

from __future__ import annotations

import email.utils
import threading
import time

MAX_WAIT = 60.0
"""the longest pause before a retry, whatever Retry-After says"""


def retry_after(value: str | None, attempt: int, base: float = 0.5) -> float:
    """Seconds to wait before retry `attempt` (0 first): the server's Retry-After (seconds or
    an HTTP date), else `base * 2**attempt`; at most MAX_WAIT."""
    if value:
        try:
            return min(MAX_WAIT, max(0.0, float(value)))
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError):
                when = None
            if when is not None:
                return min(MAX_WAIT, max(0.0, when.timestamp() - time.time()))
    return min(MAX_WAIT, base * 2**attempt)


class HostRate:
    """At most `rate` requests per second to each host from this process: each request
    takes the next free slot, 1/rate s after the one before (threads included)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.lock = threading.Lock()
        self.next: dict[str, float] = {}

    def wait(self, host: str) -> None:
        if self.rate <= 0:
            return
        with self.lock:
            now = time.monotonic()
            slot = max(now, self.next.get(host, now))
            self.next[host] = slot + 1.0 / self.rate
        if slot > now:
            time.sleep(slot - now)


def host_rate(rate: float) -> HostRate:
    """This worker's (or process's) limiter for `rate` requests/s per host, shared by every
    source and thread that asks for the same rate."""
    from sarlo_dask.driver.worker_state import worker_state

    return worker_state().memo("host-rates", rate, lambda: HostRate(rate))
