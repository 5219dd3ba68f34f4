"""Graceful drain of one replica: stop admitting sessions, let the live ones finish, then stop.

The drain state is one file (`DITTO_DRAIN_FILE`, default /tmp/ditto-draining) that every process
of the replica reads: while it exists the orchestrator refuses new sessions with "resource
exhausted: ... draining" (the client retries elsewhere) and the supervisor's `/ready` answers 503,
so Kubernetes and Envoy stop routing new streams here. Live sessions are counted from the
orchestrator's `ditto_active_sessions` gauge on Triton's metrics port.

`ditto-drain --wait` is the pod's preStop hook; the supervisor (`model_repository/replica.py`) runs the same
drain when it gets SIGTERM, so `docker stop`, compose and a pod without the hook drain too.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from ditto_triton.model_repository.prometheus import MetricsError, scrape, value
from ditto_triton.protocol import METRIC_ACTIVE_SESSIONS

DRAIN_FILE_ENV = "DITTO_DRAIN_FILE"
DEFAULT_DRAIN_FILE = Path("/tmp/ditto-draining")
DEFAULT_METRICS_URL = "http://127.0.0.1:8002/metrics"
DEFAULT_TIMEOUT_S = 300.0


def drain_file(env: dict[str, str] | os._Environ = os.environ) -> Path:
    return Path(env.get(DRAIN_FILE_ENV) or DEFAULT_DRAIN_FILE)


def is_draining(path: Path | str | None) -> bool:
    return path is not None and os.path.exists(path)


def start_drain(path: Path) -> None:
    """Mark the replica draining (idempotent)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"draining since {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n")


def clear_drain(path: Path) -> None:
    """A (re)starting replica admits sessions: drop a drain mark a previous run left behind."""
    path.unlink(missing_ok=True)


def active_sessions(metrics_url: str) -> int:
    """Live sessions of this replica's orchestrator, from Triton's metrics endpoint."""
    return int(value(scrape(metrics_url, timeout_s=2.0), METRIC_ACTIVE_SESSIONS))


def wait_for_sessions(
    count: Callable[[], int], timeout_s: float, poll_s: float = 0.5, log: Callable[[str], None] = print
) -> int:
    """Poll `count` until it reads 0 or `timeout_s` passes; returns the last count (0: drained).

    An unreadable count (the server already gone) ends the wait: nothing is left to finish."""
    deadline = time.monotonic() + timeout_s
    last_logged = None
    while True:
        try:
            live = count()
        except MetricsError as exc:
            log(f"ditto-drain: cannot count live sessions ({exc}); not waiting")
            return 0
        if live == 0:
            return 0
        if live != last_logged:
            log(f"ditto-drain: waiting for {live} live session(s), {max(0.0, deadline - time.monotonic()):.0f} s left")
            last_logged = live
        if time.monotonic() >= deadline:
            log(f"ditto-drain: timeout after {timeout_s:.0f} s with {live} session(s) still live")
            return live
        time.sleep(poll_s)


def drain(path: Path, metrics_url: str, timeout_s: float, log: Callable[[str], None] = print) -> int:
    """Start draining and wait for the live sessions; returns how many were still live at the end."""
    start_drain(path)
    log(f"ditto-drain: draining ({path}); new sessions are refused")
    return wait_for_sessions(lambda: active_sessions(metrics_url), timeout_s, log=log)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ditto-drain", description=__doc__.split("\n\n")[0])
    parser.add_argument("--wait", action="store_true", help="wait until the live sessions have ended (preStop)")
    parser.add_argument(
        "--drain-file", type=Path, default=None, help=f"default ${DRAIN_FILE_ENV} or {DEFAULT_DRAIN_FILE}"
    )
    parser.add_argument("--metrics-url", default=os.environ.get("DITTO_METRICS_URL", DEFAULT_METRICS_URL))
    parser.add_argument(
        "--timeout-s",
        type=float,
        default=float(os.environ.get("DITTO_DRAIN_TIMEOUT_S", DEFAULT_TIMEOUT_S)),
        help="longest wait (default $DITTO_DRAIN_TIMEOUT_S or %(default)s)",
    )
    args = parser.parse_args(argv)
    path = args.drain_file or drain_file()
    if not args.wait:
        start_drain(path)
        print(f"ditto-drain: draining ({path}); new sessions are refused")
        return 0
    left = drain(path, args.metrics_url, args.timeout_s, log=lambda line: print(line, flush=True))
    return 0 if left == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
