"""Resident memory of a tritonserver and its python stubs over a run, and its growth after warm-up
(`soak_memory_growth_max`): what the soak and the real-time gate sample."""

from __future__ import annotations

import statistics
import threading
import time
from typing import Any

import psutil

from ditto_triton.benchmarks.process_cpu import server_processes

WINDOW_FRACTION = 0.2


def rss_by_process(pid: int) -> dict[str, float]:
    """Resident memory (MB) of tritonserver and each python stub, by model name."""
    out: dict[str, float] = {}
    for label, proc in server_processes(pid).items():
        try:
            rss = proc.memory_info().rss / 1e6
        except psutil.NoSuchProcess:
            continue
        name = label.removeprefix("stub:")
        out[name] = out.get(name, 0.0) + rss
    return out


class MemorySampler:
    def __init__(self, pid: int, period_s: float = 1.0) -> None:
        self.pid, self.period_s = pid, period_s
        self.samples: list[tuple[float, float]] = []  # (seconds since start, MB)
        self.by_process: list[tuple[float, dict[str, float]]] = []
        self._stop = threading.Event()
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True, name="soak-memory")

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            t, parts = time.monotonic() - self._t0, rss_by_process(self.pid)
            self.samples.append((t, sum(parts.values())))
            self.by_process.append((t, parts))
            self._stop.wait(self.period_s)


def memory_growth(samples: list[tuple[float, float]], duration_s: float, warmup_s: float) -> dict[str, Any]:
    """Median MB over the window right after warm-up vs over the last window (each WINDOW_FRACTION
    of the run). Warm-up lasts until every worker has finished its first session: until then the
    number of live sessions, and with it the memory they hold, is still rising."""
    window = WINDOW_FRACTION * duration_s
    warm = [mb for t, mb in samples if warmup_s <= t < warmup_s + window]
    last = [mb for t, mb in samples if t >= duration_s - window]
    if not warm or not last:
        return {"error": "too few memory samples", "samples": len(samples)}
    baseline, final = statistics.median(warm), statistics.median(last)
    return {
        "baseline_mb": round(baseline, 1),
        "final_mb": round(final, 1),
        "peak_mb": round(max(mb for _, mb in samples), 1),
        "growth_ratio": round((final - baseline) / baseline, 4),
        "warmup_s": round(warmup_s, 1),
        "window_s": round(window, 1),
    }
