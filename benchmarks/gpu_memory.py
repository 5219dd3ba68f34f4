"""GPU memory while sessions run: `nvidia-smi` sampled in the background, the peak of each
concurrency level, and the memory one more session costs (models are shared, so only session
state should grow; goal <= 50 MiB a session)."""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np


def used_mib(device: int = 0) -> float | None:
    if shutil.which("nvidia-smi") is None:
        return None
    out = subprocess.run(
        ["nvidia-smi", f"--id={device}", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        return float(out.stdout.strip())
    except ValueError:
        return None


class GpuMemorySampler:
    """Samples GPU memory every `interval_s` between start() and stop(); `take_peak()` returns the
    highest value since the previous call (None without a GPU)."""

    def __init__(self, device: int = 0, interval_s: float = 0.25) -> None:
        self.device, self.interval_s = device, interval_s
        self.available = used_mib(device) is not None
        self._peak: float | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="gpu-memory")

    def __enter__(self) -> GpuMemorySampler:
        if self.available:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            value = used_mib(self.device)
            if value is not None:
                with self._lock:
                    self._peak = value if self._peak is None else max(self._peak, value)

    def take_peak(self) -> float | None:
        with self._lock:
            peak, self._peak = self._peak, None
        return peak


def per_extra_session(levels: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """Least-squares slope of peak GPU memory over concurrency (MiB per extra session)."""
    points = [(lv["concurrency"], lv["gpu_memory_mib"]) for lv in levels if lv.get("gpu_memory_mib") is not None]
    if len(points) < 2:
        return None
    x, y = np.array(points, dtype=float).T
    slope, intercept = np.polyfit(x, y, 1)
    return {"mib_per_session": round(float(slope), 1), "mib_at_zero": round(float(intercept), 1), "points": points}
