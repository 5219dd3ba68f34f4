"""How many concurrent streaming sessions stay real time: a Locust run per concurrency level.

Each level runs `locust_sessions` in its own process (Locust monkey-patches the interpreter) with
`concurrency` users streaming the same audio paced in real time, then checks the level against
`thresholds.json`: every session complete and >= fps_min frames/s, first-frame delay p95 within
bound, worst late-frame ratio within bound. The sweep goes 1, 2, 3, ... and stops at the first level
that fails (but measures at least `min_levels`, so the report shows a trend even when one session
already misses); `max_realtime_sessions` is the last level before the first failure (0 when one
session already fails).
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ditto_triton.benchmarks.criteria import realtime_level_checks
from ditto_triton.benchmarks.session_stats import SessionRecord, aggregate, summarize
from ditto_triton.protocol import CHUNK_SAMPLES

log = logging.getLogger(__name__)
LOCUST_MODULE = "ditto_triton.benchmarks.locust_sessions"
LEVEL_KEYS = ("concurrency", "ffd_ms_p50", "ffd_ms_p95", "fps_min", "late_frame_ratio", "rtf")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")


def check_loopback(url: str) -> None:
    """Load is only ever generated against a server on this machine."""
    host = url.removeprefix("grpc://").rsplit(":", 1)[0]
    if host not in LOOPBACK_HOSTS:
        raise ValueError(f"load tests run against a local server only (127.0.0.1/localhost), got {url!r}")


def run_locust(
    url: str,
    users: int,
    *,
    image: Path,
    audio: Path,
    mode: str = "realtime",
    sessions_per_user: int = 1,
    seconds: float | None = None,
    chunk_samples: int = CHUNK_SAMPLES,
    max_size: int = 512,
    time_limit_s: float = 300.0,
) -> dict[str, Any]:
    """Run `locust_sessions` in a child process and return its JSON (see `locust_sessions.run_locust`)."""
    check_loopback(url)
    with tempfile.TemporaryDirectory(prefix="ditto-locust-") as tmp:
        out = Path(tmp) / "locust.json"
        cmd = [
            sys.executable, "-m", LOCUST_MODULE,
            "--url", url, "--image", str(image), "--audio", str(audio),
            "--users", str(users), "--sessions-per-user", str(sessions_per_user), "--mode", mode,
            "--chunk-samples", str(chunk_samples), "--max-size", str(max_size),
            "--time-limit", str(time_limit_s), "--out", str(out),
        ]  # fmt: skip
        if seconds:
            cmd += ["--seconds", str(seconds)]
        log.info("locust: %d user(s), %d %s session(s) each", users, sessions_per_user, mode)
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=time_limit_s + 60)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"the Locust run did not stop within {time_limit_s + 60:.0f} s") from None
        if proc.returncode != 0 or not out.is_file():
            tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
            raise RuntimeError(f"the Locust run failed (exit code {proc.returncode}):\n{tail}")
        return json.loads(out.read_text())


def summarize_run(run: dict[str, Any], expected_sessions: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A Locust run's sessions aggregated; sessions that never reported count as failed."""
    summaries = [summarize(SessionRecord.from_dict(r)) for r in run["records"]]
    agg = aggregate(summaries)
    agg["failed_sessions"] += max(0, expected_sessions - len(summaries))
    if run.get("timed_out"):
        agg["errors"] = [*agg["errors"], "time limit reached before every session finished"]
    agg["errors"] = [*agg["errors"], *run.get("failures", [])[:5]]
    return agg, summaries


def level_result(
    concurrency: int, run: dict[str, Any], thresholds: dict[str, float], sessions_per_user: int = 1
) -> dict[str, Any]:
    """One concurrency level: the aggregate, its checks and whether it stays real time."""
    agg, summaries = summarize_run(run, concurrency * sessions_per_user)
    level = {"concurrency": concurrency, **agg}
    checks = realtime_level_checks(level, thresholds)
    return {
        **level,
        "realtime": all(c.passed for c in checks),
        "checks": [c.to_dict() for c in checks],
        "locust": run.get("locust", {}),
        "per_session": summaries,
    }


def sweep_sessions(
    url: str,
    *,
    image: Path,
    audio: Path,
    thresholds: dict[str, float],
    max_concurrency: int = 16,
    min_levels: int = 1,
    seconds: float | None = None,
    sessions_per_user: int = 1,
    on_level: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Concurrency 1, 2, ... up to `max_concurrency`, stopping after the first level that is not real
    time once `min_levels` levels are measured. Returns {"levels": [...], "max_realtime_sessions": n}."""
    levels: list[dict[str, Any]] = []
    for concurrency in range(1, max_concurrency + 1):
        run = run_locust(
            url, concurrency, image=image, audio=audio, mode="realtime",
            sessions_per_user=sessions_per_user, seconds=seconds,
        )  # fmt: skip
        level = level_result(concurrency, run, thresholds, sessions_per_user)
        levels.append(level)
        if on_level is not None:
            on_level(level)
        if len(levels) >= min_levels and not all(lv["realtime"] for lv in levels):
            break
    passing = 0
    for level in levels:
        if not level["realtime"]:
            break
        passing = level["concurrency"]
    return {"levels": levels, "max_realtime_sessions": passing}
