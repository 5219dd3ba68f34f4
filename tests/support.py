"""Helpers the tests share (fixtures live in conftest.py)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    condition: Callable[[], T], what: str, timeout_s: float = 15.0, interval_s: float = 0.05, retry_on: tuple = ()
) -> T:
    """Poll `condition` until it returns something truthy and return that; fail naming `what` and the
    last value seen after `timeout_s`. Exceptions in `retry_on` (e.g. a server still starting) count as
    not yet."""
    deadline = time.monotonic() + timeout_s
    last: object = None
    while True:
        try:
            last = condition()
            if last:
                return last
        except retry_on as exc:
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what} (last: {last!r})")
        time.sleep(interval_s)


def active_sessions(server) -> float:
    """The orchestrator's live sessions, from the server's Prometheus endpoint."""
    from ditto_triton.model_repository.prometheus import scrape, value
    from ditto_triton.protocol import METRIC_ACTIVE_SESSIONS, ORCHESTRATOR

    return value(scrape(server.metrics_url), METRIC_ACTIVE_SESSIONS, model=ORCHESTRATOR)
