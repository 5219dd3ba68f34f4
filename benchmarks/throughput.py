"""Frames/s through tritonserver ÷ frames/s in process (`triton_over_inprocess_min`), measured one way for
the gate and the suite: one session each with the audio fully available, alternated in pairs on the same
machine in the same run, and the median of the pairs' ratios."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence

from ditto_triton.benchmarks.session_stats import SessionRecord, summarize

MIN_PAIRS = 3


def alternate(
    triton_session: Callable[[], SessionRecord], inprocess_session: Callable[[], SessionRecord], pairs: int
) -> tuple[list[float], list[float], int]:
    """(Triton frames/s, in-process frames/s, sessions that came back incomplete) of `pairs` pairs."""
    triton_fps: list[float] = []
    inprocess_fps: list[float] = []
    failed = 0
    for _ in range(pairs):
        for runs, session in ((triton_fps, triton_session), (inprocess_fps, inprocess_session)):
            summary = summarize(session())
            failed += not summary["complete"]
            runs.append(summary["fps"] or 0.0)
    return triton_fps, inprocess_fps, failed


def pair_ratios(triton_fps: Sequence[float], inprocess_fps: Sequence[float]) -> list[float]:
    """Triton ÷ in-process frames/s of each alternated pair (a pair with a missing side counts 0)."""
    return [round(t / p, 4) if t and p else 0.0 for t, p in zip(triton_fps, inprocess_fps)]


def median_ratio(ratios: Sequence[float]) -> float | None:
    """The median of at least MIN_PAIRS pairs' ratios; None with fewer."""
    return round(statistics.median(ratios), 3) if len(ratios) >= MIN_PAIRS else None
