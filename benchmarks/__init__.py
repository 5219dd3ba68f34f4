"""Benchmarks: perf_analyzer per stage, Locust sessions, ratios, the report and the real-time gate.

The data the benchmarks read and write lives beside this package, named here once:
`THRESHOLDS_FILE` (the pass/fail thresholds), `RESULTS_DIR` (one folder per committed run) and
`SAMPLES_DIR` (the sample portrait and speech: the checkout's examples/, or $DITTO_SAMPLES, since a
regular install does not carry examples/).
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent
THRESHOLDS_FILE = DATA_DIR / "thresholds.json"
RESULTS_DIR = DATA_DIR / "results"
SAMPLES_DIR = Path(os.environ.get("DITTO_SAMPLES") or DATA_DIR.parent / "examples")
