"""Prometheus metrics of the orchestrator through the python backend's custom metrics API.

A `MetricsSink` (see `ditto_triton.streaming.session_metrics`) over `pb_utils.MetricFamily`; Triton
serves the families on its metrics port (`/metrics`) next to its own `nv_*` metrics:

| metric | kind | labels |
|---|---|---|
| `ditto_active_sessions` | gauge | model, version |
| `ditto_frames_sent_total` | counter | model, version |
| `ditto_late_frames_total` | counter | model, version |
| `ditto_first_frame_delay_seconds` | histogram (`_bucket{le}`, `_sum`, `_count`) | model, version |
| `ditto_sessions_total` | counter | model, version, outcome |

Histograms are supported by the python backend of tritonserver 2.51 (checked on the real server).
Every metric call is a message to the server process; calls are made under `SessionMetrics`' lock.
"""

from __future__ import annotations

import triton_python_backend_utils as pb_utils

from ditto_triton.protocol import (
    METRIC_ACTIVE_SESSIONS,
    METRIC_FIRST_FRAME_DELAY,
    METRIC_FRAMES_SENT,
    METRIC_LATE_FRAMES,
    METRIC_SESSIONS,
)
from ditto_triton.streaming.session_metrics import OUTCOMES

# First-frame delay from tens of ms (tiny profile, audio up front) to tens of seconds (full on CPU).
FIRST_FRAME_BUCKETS_S = [0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0]


class PrometheusSink:
    def __init__(self, model: str, version: str) -> None:
        labels = {"model": model, "version": version}
        family = pb_utils.MetricFamily
        self._families = [
            family(METRIC_ACTIVE_SESSIONS, "Streaming sessions open now", family.GAUGE),
            family(METRIC_FRAMES_SENT, "Frames sent to clients", family.COUNTER),
            family(
                METRIC_LATE_FRAMES, "Frames sent after their presentation time (from the first frame)", family.COUNTER
            ),
            family(METRIC_FIRST_FRAME_DELAY, "START request arrival to first frame sent", family.HISTOGRAM),
            family(METRIC_SESSIONS, "Ended sessions by outcome", family.COUNTER),
        ]
        active, frames, late, delay, sessions = self._families
        self._active = active.Metric(labels=labels)
        self._frames = frames.Metric(labels=labels)
        self._late = late.Metric(labels=labels)
        self._delay = delay.Metric(labels=labels, buckets=FIRST_FRAME_BUCKETS_S)
        self._sessions = {o: sessions.Metric(labels={**labels, "outcome": o}) for o in OUTCOMES}

    def set_active_sessions(self, count: int) -> None:
        self._active.set(float(count))

    def add_frames(self, sent: int, late: int) -> None:
        self._frames.increment(float(sent))
        if late:
            self._late.increment(float(late))

    def observe_first_frame_delay(self, seconds: float) -> None:
        self._delay.observe(float(seconds))

    def count_session(self, outcome: str) -> None:
        self._sessions[outcome].increment(1.0)

    def close(self) -> None:
        """Drop the metrics, then their families (the backend requires this order)."""
        self._active = self._frames = self._late = self._delay = None  # type: ignore[assignment]
        self._sessions.clear()
        self._families.clear()
