"""Serving metrics of the streaming sessions, computed without Triton and reported to a sink.

The orchestrator tells `SessionMetrics` when a session opens (with the arrival time of its START
request), when each frame has been sent and how a session ended; `SessionMetrics` works out the
per-session values and hands them to a `MetricsSink` (the Prometheus one lives in
`model_repository/backends/metrics.py`):

- active sessions (a gauge);
- frames sent and late frames (counters). A frame is late when it is sent after its presentation
  time counted from the session's first frame: `sent - sent_0 > pts - pts_0 + LATE_SLACK_S` (the
  1 ms slack the client and the benchmarks use);
- first-frame delay: from the START request's arrival to the first frame sent, seconds;
- sessions by outcome: completed (END flushed), failed, client_gone (cancelled or disconnected while
  frames were due), idle_timeout, rejected (START refused),
  shutdown (model unloaded).

Times are `time.monotonic()` seconds of the serving process. Thread-safe: frames are reported from
the sessions' delivery threads. Every sink call is a message to the server process, so frame counts
are handed to the sink in bulk: with a session's first frame, then at most every `FLUSH_S` seconds,
and whenever a session closes (a scrape lags the frames by at most `FLUSH_S`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

LATE_SLACK_S = 1e-3
FLUSH_S = 0.25
OUTCOMES = ("completed", "failed", "client_gone", "idle_timeout", "rejected", "shutdown")


class MetricsSink(Protocol):
    def set_active_sessions(self, count: int) -> None: ...

    def add_frames(self, sent: int, late: int) -> None: ...

    def observe_first_frame_delay(self, seconds: float) -> None: ...

    def count_session(self, outcome: str) -> None: ...


@dataclass
class SessionTiming:
    """One session's clock: START arrival, first frame sent (time and pts), frames and late frames."""

    start_s: float
    first_sent_s: float | None = None
    first_pts_s: float = 0.0
    frames: int = 0
    late: int = 0

    def frame_sent(self, pts_s: float, now_s: float) -> tuple[float | None, bool]:
        """Record a frame; returns (first-frame delay if it is the first frame else None, late?)."""
        self.frames += 1
        if self.first_sent_s is None:
            self.first_sent_s, self.first_pts_s = now_s, pts_s
            return now_s - self.start_s, False
        late = now_s - self.first_sent_s > pts_s - self.first_pts_s + LATE_SLACK_S
        self.late += late
        return None, late


class SessionMetrics:
    def __init__(self, sink: MetricsSink, clock: Callable[[], float] = time.monotonic) -> None:
        self.sink = sink
        self.clock = clock
        self._lock = threading.Lock()
        self._sessions: dict[int, SessionTiming] = {}
        self._pending = [0, 0]  # frames sent and late frames not yet handed to the sink
        self._flushed_s = float("-inf")

    @property
    def active(self) -> int:
        with self._lock:
            return len(self._sessions)

    def timing(self, corrid: int) -> SessionTiming | None:
        with self._lock:
            return self._sessions.get(corrid)

    def session_opened(self, corrid: int, start_s: float) -> None:
        """A session opened; `start_s` is when its START request arrived (`clock` seconds)."""
        with self._lock:
            self._sessions[corrid] = SessionTiming(start_s)
            self.sink.set_active_sessions(len(self._sessions))

    def session_rejected(self) -> None:
        """A START request that did not open a session (unknown avatar, bad options, server full)."""
        with self._lock:
            self.sink.count_session("rejected")

    def frame_sent(self, corrid: int, pts_s: float, sent_s: float | None = None) -> None:
        """A frame of session `corrid` was handed to the transport at `sent_s` (`clock` seconds, default
        now). Take the time before a send that may block: the client can hold the frame before it returns."""
        now = self.clock() if sent_s is None else sent_s
        with self._lock:
            timing = self._sessions.get(corrid)
            delay, late = timing.frame_sent(pts_s, now) if timing is not None else (None, False)
            self._pending[0] += 1
            self._pending[1] += int(late)
            if delay is not None:
                self.sink.observe_first_frame_delay(delay)
            if delay is not None or timing is None or now - self._flushed_s >= FLUSH_S:
                self._flush(now)

    def flush(self) -> None:
        """Hand the pending frame counts to the sink now."""
        with self._lock:
            self._flush(self.clock())

    def _flush(self, now: float) -> None:
        if any(self._pending):
            self.sink.add_frames(*self._pending)
            self._pending = [0, 0]
        self._flushed_s = now

    def session_closed(self, corrid: int, outcome: str) -> SessionTiming | None:
        """A session was freed; returns its timing (None if it was not open)."""
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown session outcome {outcome!r}; one of {OUTCOMES}")
        with self._lock:
            timing = self._sessions.pop(corrid, None)
            if timing is None:
                return None
            self._flush(self.clock())
            self.sink.count_session(outcome)
            self.sink.set_active_sessions(len(self._sessions))
            return timing


class RecordingSink:
    """A `MetricsSink` that keeps the totals in memory (tests, the in-process pipeline)."""

    def __init__(self) -> None:
        self.active_sessions = 0
        self.frames_sent = 0
        self.late_frames = 0
        self.first_frame_delays: list[float] = []
        self.sessions: dict[str, int] = dict.fromkeys(OUTCOMES, 0)

    def set_active_sessions(self, count: int) -> None:
        self.active_sessions = count

    def add_frames(self, sent: int, late: int) -> None:
        self.frames_sent += sent
        self.late_frames += late

    def observe_first_frame_delay(self, seconds: float) -> None:
        self.first_frame_delays.append(seconds)

    def count_session(self, outcome: str) -> None:
        self.sessions[outcome] += 1
