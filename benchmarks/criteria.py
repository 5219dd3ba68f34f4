"""Pass/fail checks against `thresholds.json` (the one place the benchmark thresholds live)."""

from __future__ import annotations

import json
import operator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ditto_triton.benchmarks import THRESHOLDS_FILE

REQUIRED = (
    "fps_min",
    "late_frame_ratio_max",
    "ffd_ms_p95_realtime_max",
    "ffd_ms_p95_full_audio_max",
    "triton_over_inprocess_min",
    "soak_memory_growth_max",
)
_OPS = {">=": operator.ge, "<=": operator.le}


def load_thresholds(path: Path | None = None) -> dict[str, float]:
    """The thresholds as {name: value}; keys starting with "_" are documentation."""
    path = Path(path or THRESHOLDS_FILE)
    raw = json.loads(path.read_text())
    values = {k: float(v) for k, v in raw.items() if not k.startswith("_")}
    missing = [k for k in REQUIRED if k not in values]
    if missing:
        raise ValueError(f"{path}: missing threshold(s) {missing}")
    return values


@dataclass(frozen=True)
class Check:
    """`measured op threshold`; a missing measurement (None) fails."""

    name: str
    measured: float | None
    op: str
    threshold: float
    unit: str = ""

    @property
    def passed(self) -> bool:
        return self.measured is not None and _OPS[self.op](self.measured, self.threshold)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}

    def line(self) -> str:
        value = "missing" if self.measured is None else f"{self.measured:g}"
        unit = f" {self.unit}" if self.unit else ""
        return f"{'PASS' if self.passed else 'FAIL'}  {self.name}: {value}{unit} (needs {self.op} {self.threshold:g}{unit})"


def realtime_level_checks(level: dict[str, Any], th: dict[str, float]) -> list[Check]:
    """Whether one concurrency level (see `session_stats.aggregate`, real-time pacing) stays real time:
    every session complete and >= fps_min, FFD p95 within bound, worst late-frame ratio within bound."""
    return [
        Check("failed sessions", float(level["failed_sessions"]), "<=", 0.0),
        Check("frames/s, slowest session", level["fps_min"], ">=", th["fps_min"], "fps"),
        Check(
            "first-frame delay p95 (real-time audio)", level["ffd_ms_p95"], "<=", th["ffd_ms_p95_realtime_max"], "ms"
        ),
        Check("late-frame ratio, worst session", level["late_frame_ratio"], "<=", th["late_frame_ratio_max"]),
    ]
