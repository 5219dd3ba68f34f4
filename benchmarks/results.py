"""Reading benchmark runs back: one `BenchmarkRun` per `benchmarks/results/<run>/results.json` (the suite's
format, see `suite.py`), with its Locust session sweep, GPU memory per session and, from the run's soak,
host memory per session. Malformed files raise `ResultsError` naming the file and what is wrong.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ditto_triton.benchmarks.gpu_memory import per_extra_session

RUN_KEYS = ("profile", "flavor", "device", "date", "git_sha", "sessions", "max_realtime_sessions")
LEVEL_KEYS = ("concurrency", "realtime", "failed_sessions", "fps_min")


class ResultsError(ValueError):
    """Malformed or unusable benchmark results; the message names the file and what is wrong."""


@dataclass(frozen=True)
class Level:
    """One concurrency level of the Locust session sweep."""

    concurrency: int
    realtime: bool
    failed_sessions: int
    fps_min: float | None
    missed: tuple[str, ...] = ()  # names of the real-time checks this level failed
    gpu_memory_mib: float | None = None

    @property
    def passed(self) -> bool:
        """Real time with no failed session (the suite's rule for a level that counts)."""
        return self.realtime and self.failed_sessions == 0


@dataclass(frozen=True)
class GpuMemory:
    """Peak GPU memory against concurrency (least squares over the sweep's levels)."""

    mib_per_session: float
    mib_at_zero: float
    points: tuple[tuple[int, float], ...]


@dataclass(frozen=True)
class HostMemory:
    """Host memory per session from the run's soak (RSS of tritonserver and its python stubs):
    (median after warm-up − the idle sample at the soak's start) / concurrent sessions. An upper bound:
    buffers that grow with the batch size count as session memory."""

    mb_per_session: float
    mb_idle: float
    mb_loaded: float
    sessions: int
    source: Path
    git_sha: str | None


@dataclass(frozen=True)
class BenchmarkRun:
    """What one benchmark run says about a replica's capacity."""

    run: str  # the results directory's name
    source: Path  # its results.json
    device: str
    host: str | None
    profile: str
    flavor: str
    date: str
    git_sha: str
    max_realtime_sessions: int  # sessions per replica that stay real time
    levels: tuple[Level, ...]
    gpu_memory: GpuMemory | None
    host_memory: HostMemory | None
    thresholds: Mapping[str, float] | None  # as recorded by the run

    @property
    def sessions_per_replica(self) -> int:
        """The measured real-time maximum of one replica."""
        return self.max_realtime_sessions

    @property
    def concurrency_levels(self) -> tuple[int, ...]:
        """The concurrency of every measured sweep level."""
        return tuple(lv.concurrency for lv in self.levels)

    @property
    def measured_up_to(self) -> int:
        """The highest concurrency the sweep measured."""
        return max(self.concurrency_levels)

    @property
    def fps_min_at_max(self) -> float | None:
        """Frames/s of the slowest session at the real-time maximum (None when that is 0)."""
        level = self.level(self.max_realtime_sessions)
        return level.fps_min if level else None

    @property
    def first_failing(self) -> Level | None:
        """The first level that is not real time (None when every measured level passed)."""
        return next((lv for lv in self.levels if not lv.passed), None)

    @property
    def gpu_measured(self) -> bool:
        """Whether the run sampled GPU memory (only runs on an NVIDIA GPU do)."""
        return self.gpu_memory is not None or any(lv.gpu_memory_mib is not None for lv in self.levels)

    def level(self, concurrency: int) -> Level | None:
        """The sweep level at `concurrency`, if measured."""
        return next((lv for lv in self.levels if lv.concurrency == concurrency), None)


def realtime_maximum(levels: Sequence[Level]) -> int:
    """Sessions that stay real time by the suite's rule: the concurrency of the last level before the first
    one that is not real time or has a failed session (0 when one session already misses); a level that
    passes after a failing one does not count."""
    passing = 0
    for level in sorted(levels, key=lambda lv: lv.concurrency):
        if not level.passed:
            break
        passing = level.concurrency
    return passing


def load_results(path: str | Path) -> list[BenchmarkRun]:
    """Every run under `path`: a results.json, a run's directory holding one, or a parent directory whose
    subdirectories hold them (sorted by name). Raises ResultsError naming the file for malformed input."""
    path = Path(path)
    if path.is_file():
        return [load_run(path)]
    if not path.is_dir():
        raise ResultsError(f"{path}: no such file or directory")
    if (path / "results.json").is_file():
        return [load_run(path / "results.json")]
    files = sorted(p / "results.json" for p in path.iterdir() if (p / "results.json").is_file())
    if not files:
        raise ResultsError(f"{path}: no results.json in it or in its subdirectories")
    return [load_run(f) for f in files]


def load_run(path: Path) -> BenchmarkRun:
    """One run's capacity from its results.json (see `benchmarks/suite.py` for the format)."""
    path = Path(path)
    results = _read_json(path)
    _require(results, RUN_KEYS, str(path))
    levels = _levels(results["sessions"], path)
    stored = _int(results["max_realtime_sessions"], f"{path}: max_realtime_sessions")
    measured = realtime_maximum(levels)
    if stored != measured:
        raise ResultsError(
            f"{path}: max_realtime_sessions is {stored} but the sweep levels give {measured} "
            f"(levels measured: {[lv.concurrency for lv in levels]})"
        )
    thresholds = results.get("thresholds")
    return BenchmarkRun(
        run=path.parent.name,
        source=path,
        device=str(results["device"]),
        host=results.get("host"),
        profile=str(results["profile"]),
        flavor=str(results["flavor"]),
        date=str(results["date"]),
        git_sha=str(results["git_sha"]),
        max_realtime_sessions=stored,
        levels=levels,
        gpu_memory=_gpu_memory(results, levels, path),
        host_memory=_host_memory(path.parent, str(results["profile"]), str(results["flavor"])),
        thresholds=dict(thresholds) if isinstance(thresholds, Mapping) else None,
    )


def _require(data: Mapping[str, Any], keys: Iterable[str], where: str) -> None:
    for key in keys:
        if key not in data:
            raise ResultsError(f"{where}: missing key {key!r}")


def _int(value: Any, where: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ResultsError(f"{where}: expected an integer >= {minimum}, got {value!r}")
    return value


def _number(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ResultsError(f"{where}: expected a number, got {value!r}")
    return float(value)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ResultsError(f"{path}: not valid JSON ({err})") from None
    except OSError as err:
        raise ResultsError(f"{path}: cannot be read ({err.strerror})") from None
    if not isinstance(data, dict):
        raise ResultsError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _levels(sessions: Any, path: Path) -> tuple[Level, ...]:
    if isinstance(sessions, Mapping) and "error" in sessions:
        raise ResultsError(f"{path}: the session sweep did not run ({sessions['error']}); no capacity to read")
    if not isinstance(sessions, list) or not sessions:
        raise ResultsError(f"{path}: 'sessions' must be a non-empty list of sweep levels")
    levels = [_level(raw, f"{path}: sessions[{i}]") for i, raw in enumerate(sessions)]
    levels.sort(key=lambda lv: lv.concurrency)
    return tuple(levels)


def _level(raw: Any, where: str) -> Level:
    if not isinstance(raw, Mapping):
        raise ResultsError(f"{where}: expected an object")
    _require(raw, LEVEL_KEYS, where)
    if not isinstance(raw["realtime"], bool):
        raise ResultsError(f"{where}.realtime: expected true or false, got {raw['realtime']!r}")
    checks = raw.get("checks") or []
    missed = tuple(str(c.get("name")) for c in checks if isinstance(c, Mapping) and not c.get("passed"))
    return Level(
        concurrency=_int(raw["concurrency"], f"{where}.concurrency", minimum=1),
        realtime=raw["realtime"],
        failed_sessions=_int(raw["failed_sessions"], f"{where}.failed_sessions"),
        fps_min=_number(raw["fps_min"], f"{where}.fps_min"),
        missed=missed,
        gpu_memory_mib=_number(raw.get("gpu_memory_mib"), f"{where}.gpu_memory_mib"),
    )


def _gpu_memory(results: Mapping[str, Any], levels: Sequence[Level], path: Path) -> GpuMemory | None:
    """GPU memory per extra session: the slope over the levels' peaks (as the suite computes it), else the
    run's recorded `gpu_memory_per_session`, else None."""
    fitted = per_extra_session([{"concurrency": lv.concurrency, "gpu_memory_mib": lv.gpu_memory_mib} for lv in levels])
    if fitted is None:
        fitted = results.get("gpu_memory_per_session")
        if fitted is None:
            return None
        if not isinstance(fitted, Mapping):
            raise ResultsError(f"{path}: 'gpu_memory_per_session' must be an object or null")
        _require(fitted, ("mib_per_session", "mib_at_zero"), f"{path}: gpu_memory_per_session")
    try:
        return GpuMemory(
            mib_per_session=float(fitted["mib_per_session"]),
            mib_at_zero=float(fitted["mib_at_zero"]),
            points=tuple((int(c), float(m)) for c, m in fitted.get("points") or ()),
        )
    except (TypeError, ValueError) as err:
        raise ResultsError(f"{path}: gpu_memory_per_session: not numbers ({err})") from None


def _host_memory(run_dir: Path, profile: str, flavor: str) -> HostMemory | None:
    """Host memory per session from `soak.json` beside results.json when it is the same profile and flavor."""
    path = run_dir / "soak.json"
    if not path.is_file():
        return None
    soak = _read_json(path)
    _require(soak, ("sessions", "memory", "memory_samples"), str(path))
    if soak.get("profile", profile) != profile or soak.get("flavor", flavor) != flavor:
        return None
    memory, samples = soak["memory"], soak["memory_samples"]
    if not isinstance(memory, Mapping) or "error" in memory or not samples:
        return None
    _require(memory, ("baseline_mb",), f"{path}: memory")
    sessions = _int(soak["sessions"], f"{path}: sessions", minimum=1)
    try:
        idle = float(samples[0][1])
    except (TypeError, ValueError, IndexError):
        raise ResultsError(f"{path}: memory_samples must be [seconds, MB] pairs") from None
    loaded = float(memory["baseline_mb"])
    return HostMemory(
        mb_per_session=round((loaded - idle) / sessions, 1),
        mb_idle=round(idle, 1),
        mb_loaded=round(loaded, 1),
        sessions=sessions,
        source=path,
        git_sha=soak.get("git_sha"),
    )
