"""What one streaming session measured, and the numbers derived from it (no Triton, no Locust).

A `SessionRecord` keeps the raw timeline of one session: when its first request was sent and when each
frame arrived (both `time.perf_counter()` seconds), with each frame's presentation time. The same
record comes from a session through tritonserver (`triton_session.py`, also inside Locust) and from
the in-process pipeline (`inprocess.py`), so both are summarized by the same code:

- first-frame delay (FFD): first frame's arrival - first request sent, ms;
- inter-frame intervals: differences of consecutive arrivals, ms;
- late frames: a frame is late when it arrives after its presentation time counted from the first
  frame's arrival, i.e. `arrival - arrival_0 > pts - pts_0` (1 ms slack, as `ditto-render` counts);
- frames/s (sustained): (frames - 1) / (last arrival - first arrival);
- real-time factor (RTF): (last arrival - first request) / audio duration; below 1 is faster than real
  time. With real-time pacing it cannot go below ~1 (the audio itself takes that long).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

MODES = ("realtime", "full")  # audio paced in real time / fully available up front
LATE_SLACK_S = 1e-3


@dataclass
class SessionRecord:
    """One session's timeline; times are seconds relative to the first request sent."""

    mode: str
    audio_s: float
    expected_frames: int
    arrivals_s: list[float] = field(default_factory=list)
    pts_s: list[float] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SessionRecord:
        return cls(**data)


def late_frames(arrivals_s: Sequence[float], pts_s: Sequence[float], slack_s: float = LATE_SLACK_S) -> int:
    """Frames that arrived after their presentation time, counted from the first frame's arrival."""
    if not arrivals_s:
        return 0
    t0, p0 = arrivals_s[0], pts_s[0]
    return sum(t - t0 > p - p0 + slack_s for t, p in zip(arrivals_s, pts_s))


def lateness_ms(arrivals_s: Sequence[float], pts_s: Sequence[float]) -> list[float]:
    """Per frame: arrival - presentation time, both counted from the first frame, in ms (> 0: late)."""
    if not arrivals_s:
        return []
    t0, p0 = arrivals_s[0], pts_s[0]
    return [((t - t0) - (p - p0)) * 1e3 for t, p in zip(arrivals_s, pts_s)]


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (numpy's default); None for no values."""
    finite = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.percentile(finite, q)) if finite else None


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(float(value), digits)


def summarize(record: SessionRecord) -> dict[str, Any]:
    """Per-session numbers: ffd_ms, fps, late_frames, late_frame_ratio, rtf, interval_ms_{p50,p95,max}."""
    arrivals = record.arrivals_s
    n = len(arrivals)
    intervals_ms = np.diff(arrivals) * 1e3 if n > 1 else np.zeros(0)
    span = arrivals[-1] - arrivals[0] if n > 1 else 0.0
    late = late_frames(arrivals, record.pts_s)
    lateness = lateness_ms(arrivals, record.pts_s)
    return {
        "mode": record.mode,
        "audio_s": round(record.audio_s, 3),
        "frames": n,
        "expected_frames": record.expected_frames,
        "complete": n == record.expected_frames and record.error is None,
        "ffd_ms": _round(arrivals[0] * 1e3, 1) if n else None,
        "fps": _round((n - 1) / span) if span > 0 else None,
        "late_frames": late,
        "late_frame_ratio": round(late / n, 4) if n else None,
        # How far behind its presentation time the worst frame was: the playout buffer that would
        # have hidden every late frame.
        "late_ms_max": _round(max(lateness), 1) if lateness else None,
        "rtf": _round(arrivals[-1] / record.audio_s, 3) if n and record.audio_s > 0 else None,
        "interval_ms_p50": _round(percentile(intervals_ms, 50)),
        "interval_ms_p95": _round(percentile(intervals_ms, 95)),
        "interval_ms_max": _round(float(intervals_ms.max())) if intervals_ms.size else None,
        "error": record.error,
    }


def aggregate(summaries: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Several sessions (e.g. one concurrency level): FFD p50/p95 over sessions, the worst session's
    frames/s, late-frame ratio, lateness and RTF, and how many sessions failed or came back incomplete."""
    ffd = [s["ffd_ms"] for s in summaries if s["ffd_ms"] is not None]
    fps = [s["fps"] for s in summaries]
    late = [s["late_frame_ratio"] for s in summaries if s["late_frame_ratio"] is not None]
    rtf = [s["rtf"] for s in summaries if s["rtf"] is not None]
    return {
        "sessions": len(summaries),
        "failed_sessions": sum(not s["complete"] for s in summaries),
        "ffd_ms_p50": _round(percentile(ffd, 50), 1),
        "ffd_ms_p95": _round(percentile(ffd, 95), 1),
        # A session without a frame rate (fewer than 2 frames) counts as 0 frames/s.
        "fps_min": _round(min((f or 0.0) for f in fps)) if fps else None,
        "fps_mean": _round(float(np.mean([f or 0.0 for f in fps]))) if fps else None,
        "late_frame_ratio": max(late) if late else None,
        "late_ms_max": max((s["late_ms_max"] for s in summaries if s["late_ms_max"] is not None), default=None),
        "rtf": max(rtf) if rtf else None,
        "errors": sorted({s["error"] for s in summaries if s["error"]}),
    }
