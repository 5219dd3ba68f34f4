"""Capacity planning (`ditto-capacity`): replicas for N concurrent sessions, from benchmark results.

    ditto-capacity                                             # every committed run, a table per run
    ditto-capacity --results benchmarks/results/<run> --users 200
    ditto-capacity --results benchmarks/results/<run> --users 200 --format set   # helm --set flags
    ditto-capacity --write-page deploy/CAPACITY.md             # regenerate the capacity page

A replica is one tritonserver with one GPU; a live session is one gRPC stream whose state stays on the
replica it started on, so capacity is counted in concurrent sessions per replica. The benchmark suite's
Locust session sweep (`make bench`, `make bench-gpu`) measures how many sessions one replica keeps in real
time (`max_realtime_sessions` in results.json); `plan()` turns that into an admission limit
(`sessions.maxPerReplica`, the container's DITTO_MAX_SESSIONS), an HPA target below it
(`autoscaling.targetSessionsPerReplica`) and a replica count. Every number this module prints comes from a
results file or from the formula in `plan()`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ditto_triton.benchmarks.criteria import load_thresholds
from ditto_triton.benchmarks.gpu_memory import per_extra_session
from ditto_triton.benchmarks.report import RESULTS_ROOT

DEFAULT_HEADROOM = 0.25
DEFAULT_USERS_ROWS = (10, 50, 100, 500, 1000)
HPA_TOLERANCE = 0.1  # Kubernetes' default --horizontal-pod-autoscaler-tolerance: no scaling within ±10 % of the target
RUN_KEYS = ("profile", "flavor", "device", "date", "git_sha", "sessions", "max_realtime_sessions")
LEVEL_KEYS = ("concurrency", "realtime", "failed_sessions", "fps_min")
PAGE_COMMAND = "ditto-capacity --write-page deploy/CAPACITY.md"


class CapacityError(ValueError):
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
class CapacityInput:
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


@dataclass(frozen=True)
class Plan:
    """Replicas and Helm values for `users` concurrent sessions."""

    users: int
    sessions_per_replica: int  # measured real-time maximum = the admission limit
    headroom: float
    target_sessions_per_replica: int  # the HPA target
    replicas: int  # replicas needed at the target
    max_replicas: int | None  # the cap given to plan(), if any
    gpu_mib_per_session: float | None = None
    gpu_mib_base: float | None = None
    host_mb_per_session: float | None = None
    host_mb_base: float | None = None

    @property
    def admission_limit(self) -> int:
        """Sessions a replica admits before refusing with "resource exhausted" (sessions.maxPerReplica)."""
        return self.sessions_per_replica

    @property
    def hpa_target(self) -> int:
        """Average active sessions per pod the HPA scales to (autoscaling.targetSessionsPerReplica)."""
        return self.target_sessions_per_replica

    @property
    def hpa_can_scale_up(self) -> bool:
        """Whether the average active sessions can rise far enough above the HPA target to add a replica: a replica
        refuses sessions beyond its admission limit, so the average never exceeds it, and the HPA ignores averages
        within HPA_TOLERANCE of its target."""
        return self.admission_limit > self.hpa_target * (1.0 + HPA_TOLERANCE)

    @property
    def min_replicas(self) -> int:
        """The HPA's floor: 1 when it can scale up on sessions, otherwise the replicas needed (a fixed size)."""
        return 1 if self.hpa_can_scale_up else self.helm_max_replicas

    @property
    def helm_max_replicas(self) -> int:
        """The HPA's ceiling: the cap when one is given, otherwise the replicas needed (at least 1)."""
        return self.max_replicas if self.max_replicas is not None else max(1, self.replicas)

    @property
    def fits(self) -> bool:
        """Whether the replicas needed fit under the cap."""
        return self.max_replicas is None or self.replicas <= self.max_replicas

    @property
    def session_capacity(self) -> int:
        """Concurrent sessions admitted at `replicas` replicas before refusals (replicas × admission limit)."""
        return self.replicas * self.admission_limit

    @property
    def gpu_mib_per_replica(self) -> float | None:
        """GPU memory of one replica at its admission limit (base + per session × limit)."""
        return _at_limit(self.gpu_mib_base, self.gpu_mib_per_session, self.admission_limit)

    @property
    def gpu_mib_total(self) -> float | None:
        """GPU memory of all `replicas` at their admission limit."""
        per = self.gpu_mib_per_replica
        return None if per is None else round(per * self.replicas, 1)

    @property
    def host_mb_per_replica(self) -> float | None:
        """Host memory (RSS) of one replica at its admission limit."""
        return _at_limit(self.host_mb_base, self.host_mb_per_session, self.admission_limit)

    @property
    def host_mb_total(self) -> float | None:
        """Host memory (RSS) of all `replicas` at their admission limit."""
        per = self.host_mb_per_replica
        return None if per is None else round(per * self.replicas, 1)


def _at_limit(base: float | None, per_session: float | None, limit: int) -> float | None:
    if base is None or per_session is None:
        return None
    return round(base + per_session * limit, 1)


# ---------------------------------------------------------------------------------------------------
# Reading results


def _require(data: Mapping[str, Any], keys: Iterable[str], where: str) -> None:
    for key in keys:
        if key not in data:
            raise CapacityError(f"{where}: missing key {key!r}")


def _int(value: Any, where: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise CapacityError(f"{where}: expected an integer >= {minimum}, got {value!r}")
    return value


def _number(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CapacityError(f"{where}: expected a number, got {value!r}")
    return float(value)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise CapacityError(f"{path}: not valid JSON ({err})") from None
    except OSError as err:
        raise CapacityError(f"{path}: cannot be read ({err.strerror})") from None
    if not isinstance(data, dict):
        raise CapacityError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _levels(sessions: Any, path: Path) -> tuple[Level, ...]:
    if isinstance(sessions, Mapping) and "error" in sessions:
        raise CapacityError(f"{path}: the session sweep did not run ({sessions['error']}); no capacity to read")
    if not isinstance(sessions, list) or not sessions:
        raise CapacityError(f"{path}: 'sessions' must be a non-empty list of sweep levels")
    levels = []
    for i, raw in enumerate(sessions):
        where = f"{path}: sessions[{i}]"
        if not isinstance(raw, Mapping):
            raise CapacityError(f"{where}: expected an object")
        _require(raw, LEVEL_KEYS, where)
        if not isinstance(raw["realtime"], bool):
            raise CapacityError(f"{where}.realtime: expected true or false, got {raw['realtime']!r}")
        missed = tuple(str(c.get("name")) for c in raw.get("checks") or [] if isinstance(c, Mapping) and not c.get("passed"))
        levels.append(
            Level(
                concurrency=_int(raw["concurrency"], f"{where}.concurrency", minimum=1),
                realtime=raw["realtime"],
                failed_sessions=_int(raw["failed_sessions"], f"{where}.failed_sessions"),
                fps_min=_number(raw["fps_min"], f"{where}.fps_min"),
                missed=missed,
                gpu_memory_mib=_number(raw.get("gpu_memory_mib"), f"{where}.gpu_memory_mib"),
            )
        )
    levels.sort(key=lambda lv: lv.concurrency)
    return tuple(levels)


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


def _gpu_memory(results: Mapping[str, Any], levels: Sequence[Level], path: Path) -> GpuMemory | None:
    """GPU memory per extra session: the slope over the levels' peaks (as the suite computes it), else the
    run's recorded `gpu_memory_per_session`, else None."""
    fitted = per_extra_session([{"concurrency": lv.concurrency, "gpu_memory_mib": lv.gpu_memory_mib} for lv in levels])
    if fitted is None:
        fitted = results.get("gpu_memory_per_session")
        if fitted is None:
            return None
        if not isinstance(fitted, Mapping):
            raise CapacityError(f"{path}: 'gpu_memory_per_session' must be an object or null")
        _require(fitted, ("mib_per_session", "mib_at_zero"), f"{path}: gpu_memory_per_session")
    try:
        return GpuMemory(
            mib_per_session=float(fitted["mib_per_session"]), mib_at_zero=float(fitted["mib_at_zero"]),
            points=tuple((int(c), float(m)) for c, m in fitted.get("points") or ()),
        )
    except (TypeError, ValueError) as err:
        raise CapacityError(f"{path}: gpu_memory_per_session: not numbers ({err})") from None


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
        raise CapacityError(f"{path}: memory_samples must be [seconds, MB] pairs") from None
    loaded = float(memory["baseline_mb"])
    return HostMemory(
        mb_per_session=round((loaded - idle) / sessions, 1), mb_idle=round(idle, 1), mb_loaded=round(loaded, 1),
        sessions=sessions, source=path, git_sha=soak.get("git_sha"),
    )


def load_run(path: Path) -> CapacityInput:
    """One run's capacity from its results.json (see `benchmarks/suite.py` for the format)."""
    path = Path(path)
    results = _read_json(path)
    _require(results, RUN_KEYS, str(path))
    levels = _levels(results["sessions"], path)
    stored = _int(results["max_realtime_sessions"], f"{path}: max_realtime_sessions")
    measured = realtime_maximum(levels)
    if stored != measured:
        raise CapacityError(
            f"{path}: max_realtime_sessions is {stored} but the sweep levels give {measured} "
            f"(levels measured: {[lv.concurrency for lv in levels]})"
        )
    thresholds = results.get("thresholds")
    return CapacityInput(
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


def load_results(path: str | Path) -> list[CapacityInput]:
    """Every run under `path`: a results.json, a run's directory holding one, or a parent directory whose
    subdirectories hold them (sorted by name). Raises CapacityError naming the file for malformed input."""
    path = Path(path)
    if path.is_file():
        return [load_run(path)]
    if not path.is_dir():
        raise CapacityError(f"{path}: no such file or directory")
    if (path / "results.json").is_file():
        return [load_run(path / "results.json")]
    files = sorted(p / "results.json" for p in path.iterdir() if (p / "results.json").is_file())
    if not files:
        raise CapacityError(f"{path}: no results.json in it or in its subdirectories")
    return [load_run(f) for f in files]


# ---------------------------------------------------------------------------------------------------
# Planning


def plan(
    sessions_per_replica: int,
    users: int,
    headroom: float = DEFAULT_HEADROOM,
    max_replicas: int | None = None,
    *,
    gpu_mib_per_session: float | None = None,
    gpu_mib_base: float | None = None,
    host_mb_per_session: float | None = None,
    host_mb_base: float | None = None,
) -> Plan:
    """Replicas for `users` concurrent sessions on replicas that keep `sessions_per_replica` in real time.

    target = max(1, floor(sessions_per_replica × (1 − headroom))) sessions per replica (the HPA target),
    replicas = ceil(users / target); the admission limit is `sessions_per_replica` itself. Memory totals are
    filled in when the per-session and base memory are given."""
    if isinstance(sessions_per_replica, bool) or not isinstance(sessions_per_replica, int) or sessions_per_replica < 1:
        raise ValueError(f"sessions_per_replica must be an integer >= 1, got {sessions_per_replica!r}")
    if isinstance(users, bool) or not isinstance(users, int) or users < 0:
        raise ValueError(f"users must be an integer >= 0, got {users!r}")
    if isinstance(headroom, bool) or not isinstance(headroom, int | float) or not 0.0 <= headroom < 1.0:
        raise ValueError(f"headroom must be in [0, 1), got {headroom!r}")
    if max_replicas is not None and (isinstance(max_replicas, bool) or not isinstance(max_replicas, int) or max_replicas < 1):
        raise ValueError(f"max_replicas must be an integer >= 1 or None, got {max_replicas!r}")
    # the epsilon keeps 10 × (1 − 0.8), 1.999… in floating point, from flooring to 1
    target = max(1, math.floor(sessions_per_replica * (1.0 - headroom) + 1e-9))
    return Plan(
        users=users, sessions_per_replica=sessions_per_replica, headroom=float(headroom),
        target_sessions_per_replica=target, replicas=math.ceil(users / target), max_replicas=max_replicas,
        gpu_mib_per_session=gpu_mib_per_session, gpu_mib_base=gpu_mib_base,
        host_mb_per_session=host_mb_per_session, host_mb_base=host_mb_base,
    )  # fmt: skip


def plan_for(run: CapacityInput, users: int, headroom: float = DEFAULT_HEADROOM, max_replicas: int | None = None) -> Plan:
    """`plan()` with a run's measured sessions per replica and memory."""
    if run.sessions_per_replica < 1:
        raise CapacityError(
            f"{run.source}: no real-time session measured (max_realtime_sessions 0: one session already misses "
            f"real time on {run.device}); there is nothing to plan"
        )
    gpu, host = run.gpu_memory, run.host_memory
    return plan(
        run.sessions_per_replica, users, headroom, max_replicas,
        gpu_mib_per_session=gpu.mib_per_session if gpu else None, gpu_mib_base=gpu.mib_at_zero if gpu else None,
        host_mb_per_session=host.mb_per_session if host else None, host_mb_base=host.mb_idle if host else None,
    )  # fmt: skip


def helm_values(p: Plan) -> dict[str, dict[str, int]]:
    """The chart values (deploy/helm/ditto-triton) for a plan."""
    return {
        "sessions": {"maxPerReplica": p.admission_limit},
        "autoscaling": {
            "targetSessionsPerReplica": p.hpa_target,
            "minReplicas": p.min_replicas,
            "maxReplicas": p.helm_max_replicas,
        },
    }


def _flatten(values: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in values.items():
        if isinstance(value, Mapping):
            out += _flatten(value, f"{prefix}{key}.")
        else:
            out.append((f"{prefix}{key}", value))
    return out


def as_set_flags(values: Mapping[str, Any]) -> str:
    """Helm `--set key=value` flags, one line."""
    return " ".join(f"--set {key}={value}" for key, value in _flatten(values))


def as_yaml(values: Mapping[str, Any], indent: int = 0) -> str:
    """A values.yaml fragment (nested mappings of scalars)."""
    lines = []
    for key, value in values.items():
        if isinstance(value, Mapping):
            lines.append(f"{' ' * indent}{key}:")
            lines.append(as_yaml(value, indent + 2))
        else:
            lines.append(f"{' ' * indent}{key}: {value}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------
# The page


def _num(value: float) -> str:
    """A number as written on the page: thousands separated, one decimal unless integral."""
    return f"{int(value):,}" if float(value).is_integer() else f"{value:,.1f}"


def _mem(value: float | None, unit: str) -> str:
    return "not measured" if value is None else f"{_num(value)} {unit}"


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return lines + ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]


def _pct(fraction: float) -> str:
    return f"{100 * fraction:g} %"


def _gpu_cell(run: CapacityInput) -> str:
    gpu = run.gpu_memory
    return "not measured" if gpu is None else f"{_num(gpu.mib_per_session)} MiB (base {_num(gpu.mib_at_zero)} MiB)"


def _host_cell(run: CapacityInput) -> str:
    host = run.host_memory
    if host is None:
        return "not measured"
    return f"≤ {_num(host.mb_per_session)} MB (soak, {host.sessions} sessions)"


def _level_text(level: Level, thresholds: Mapping[str, float]) -> str:
    fps = "–" if level.fps_min is None else f"{level.fps_min:g} frames/s"
    missed = "; ".join(level.missed) if level.missed else ("failed sessions" if level.failed_sessions else "real time")
    return f"{level.concurrency} session(s): slowest {fps} (needs ≥ {thresholds['fps_min']:g}); missed: {missed}"


def _run_section(run: CapacityInput, users_rows: Sequence[int], thresholds: Mapping[str, float]) -> list[str]:
    lines = [f"### {run.run}", ""]
    lines.append(
        f"{run.device} · {run.profile} profile · {run.flavor} flavor · {run.date} · git `{run.git_sha[:12]}` · "
        f"sweep levels measured: {', '.join(map(str, run.concurrency_levels))}"
    )
    lines.append("")
    failing = run.first_failing
    if run.sessions_per_replica < 1:
        assert failing is not None
        lines += [
            "**No replica count**: one session already misses real time on this device, so a replica of it serves no "
            f"real-time session. {_level_text(failing, thresholds)}.",
            "",
        ]
        return lines
    if failing is None:
        lines.append(
            f"Every measured level was real time: {run.sessions_per_replica} is a lower bound (measured up to "
            f"{run.measured_up_to}; `--max-sessions` raises the sweep's ceiling)."
        )
    else:
        lines.append(
            f"Real time up to {run.sessions_per_replica} session(s) (slowest session {run.fps_min_at_max:g} frames/s); "
            f"first level that is not: {_level_text(failing, thresholds)}."
        )
    if run.host_memory is not None:
        host = run.host_memory
        sha = f", git `{host.git_sha[:12]}`" if host.git_sha else ""
        lines.append(
            f"Host memory from `{host.source.name}`{sha}: RSS of tritonserver and its stubs {_num(host.mb_idle)} MB idle, "
            f"{_num(host.mb_loaded)} MB with {host.sessions} sessions → ≤ {_num(host.mb_per_session)} MB per session "
            "(an upper bound: buffers that grow with the batch size count as session memory)."
        )
    lines.append("")
    rows = []
    plans = [plan_for(run, users) for users in users_rows]
    for p in plans:
        rows.append([
            p.users, p.replicas, p.target_sessions_per_replica, p.admission_limit, p.session_capacity,
            _mem(p.gpu_mib_per_replica, "MiB"), _mem(p.gpu_mib_total, "MiB"),
            _mem(p.host_mb_per_replica, "MB"), _mem(p.host_mb_total, "MB"),
        ])  # fmt: skip
    lines += [f"Replicas for N concurrent users (headroom {_pct(DEFAULT_HEADROOM)}; memory per replica at its admission limit):", ""]
    lines += _table(
        ["users", "replicas (GPUs)", "HPA target / replica", "admission limit / replica", "sessions admitted at that size",
         "GPU memory / replica", "GPU memory, all", "host memory / replica", "host memory, all"],
        rows,
    )  # fmt: skip
    top = plans[-1]
    if not top.hpa_can_scale_up:
        lines += ["", f"With {top.admission_limit} session(s) per replica and headroom {_pct(DEFAULT_HEADROOM)} the HPA "
                      f"target ({top.hpa_target}) leaves no room below the admission limit: the average active sessions "
                      "can never rise enough above the target to add a replica, so `minReplicas` = `maxReplicas` = "
                      "replicas (a fixed size)."]  # fmt: skip
    lines += [
        "",
        f"Helm values for {top.users} users (`maxReplicas` is the replicas column for another N):",
        "",
        "```yaml",
        as_yaml(helm_values(top)),
        "```",
        "",
        "```",
        as_set_flags(helm_values(top)),
        "```",
        "",
    ]
    return lines


def render_page(inputs: Sequence[CapacityInput], users_rows: Sequence[int] = DEFAULT_USERS_ROWS) -> str:
    """The markdown of deploy/CAPACITY.md for these runs. Deterministic: runs are named by their results
    directory, not by path, and nothing depends on the date or machine it is generated on."""
    if not inputs:
        raise CapacityError("no benchmark runs to render")
    from ditto_triton.client.session import CHUNK_SAMPLES, SAMPLE_RATE  # the sweep's chunks (imports tritonclient)

    th = load_thresholds()
    chunk_ms = 1000 * CHUNK_SAMPLES / SAMPLE_RATE
    example = max(users_rows)
    lines = [
        "# Capacity: replicas for N concurrent sessions",
        "",
        f"Generated by `{PAGE_COMMAND}` from `benchmarks/results/*/results.json` and `benchmarks/thresholds.json`; "
        "do not edit by hand (`tests/test_capacity.py` fails when this page differs from what the tool writes). "
        "Every number below comes from a results file, from the thresholds file or from the formula.",
        "",
        "## What a replica is",
        "",
        "One replica is one pod running one `tritonserver` (every stage model and the session orchestrator) on one GPU "
        "(`nvidia.com/gpu: 1`). A live session is one gRPC stream whose state (audio buffers, diffusion windows, "
        "motion smoothing) lives on the replica it started on for its whole life, so capacity is counted in "
        "**concurrent sessions per replica**, not in requests per second. A replica admits at most "
        "`sessions.maxPerReplica` sessions (the container's `DITTO_MAX_SESSIONS`); one more session start is refused "
        "at once with `resource exhausted` while the admitted ones keep streaming. The HPA scales on the average "
        "`ditto_active_sessions` per pod towards `autoscaling.targetSessionsPerReplica`, between "
        "`autoscaling.minReplicas` and `autoscaling.maxReplicas`.",
        "",
        "## How sessions per replica is measured",
        "",
        "`make bench` (the tiny profile on CPU) and `make bench-gpu` (the full profile, torch flavor on CUDA) run the "
        "benchmark suite against one tritonserver. Its Locust session sweep runs 1, 2, 3, … concurrent users, each "
        f"streaming the sample speech in {chunk_ms:g} ms chunks paced in real time, and stops after the "
        "first level that is not real time (measuring a few levels in any case). A level is real time when, with the "
        f"thresholds of `benchmarks/thresholds.json`:",
        "",
        "- every session completes (no failed session);",
        f"- the slowest session sustains ≥ {th['fps_min']:g} frames/s;",
        f"- the first-frame delay p95 is ≤ {th['ffd_ms_p95_realtime_max']:g} ms;",
        f"- the worst session's late-frame ratio is ≤ {th['late_frame_ratio_max']:g} ({_pct(th['late_frame_ratio_max'])}).",
        "",
        "Sessions per replica (`max_realtime_sessions`) is the last level before the first one that misses "
        "(0 when one session already misses). On a GPU the suite also samples `nvidia-smi` during each level; GPU "
        "memory per extra session is the least-squares slope of the levels' peaks against concurrency (the "
        "intercept is the base). Host memory per session comes from a run's soak (`make soak`), where one exists.",
        "",
        "## The formula",
        "",
        f"With S measured sessions per replica, U concurrent users and headroom h (default {DEFAULT_HEADROOM:g}):",
        "",
        "- admission limit `sessions.maxPerReplica` = S (the measured real-time maximum: never admit a session that "
        "would push the replica out of real time);",
        "- HPA target `autoscaling.targetSessionsPerReplica` = T = max(1, floor(S × (1 − h)));",
        "- replicas = ceil(U / T), one GPU each; `autoscaling.maxReplicas` = replicas;",
        "- `autoscaling.minReplicas` = 1 when the HPA can scale up on sessions, that is when S > T × "
        f"{1 + HPA_TOLERANCE:g} (Kubernetes' default tolerance leaves averages within {_pct(HPA_TOLERANCE)} of the "
        "target alone, and a replica never holds more than S sessions, so the average never exceeds S); otherwise "
        "`minReplicas` = replicas, a fixed size;",
        "- memory per replica at its limit = base + per-session × S, where measured.",
        "",
        "The headroom keeps room between the HPA target and the hard limit: sessions are sticky (the HPA cannot move "
        "them) and a new replica needs a GPU node and a model load before it takes sessions. Raise `minReplicas` "
        "towards the replicas needed if that start-up time is not acceptable for the expected load.",
        "",
    ]
    gpu_runs = [r for r in inputs if r.gpu_measured]
    lines += ["## Measured runs", ""]
    if not gpu_runs:
        devices = sorted({r.device for r in inputs})
        hosts = sorted({r.host for r in inputs if r.host})
        profiles = sorted({r.profile for r in inputs})
        lines += [
            f"> **No GPU has been measured yet.** None of the runs below sampled GPU memory (only a run on an NVIDIA "
            f"GPU does; the suite names the GPU as the device when `nvidia-smi` finds one). They were measured on "
            f"{', '.join(devices)} (host `{', '.join(hosts) or 'unknown'}`) with the "
            f"{', '.join(profiles)} profile{'s' if len(profiles) > 1 else ''}"
            + (" — the tiny profile is Ditto shrunk to stream in real time on two CPU cores" if "tiny" in profiles else "")
            + ", so their sessions per replica say nothing about a GPU replica serving the full profile. "
            "Use them to check the tooling, not to size a cluster. To produce GPU numbers, run `make bench-gpu` on the "
            f"GPU host, commit its `benchmarks/results/<date>-<host>-full-torch/` and regenerate this page with `{PAGE_COMMAND}`.",
            "",
        ]
    rows = [
        [r.run, r.device, r.profile, r.flavor, r.date, f"`{r.git_sha[:12]}`", r.measured_up_to, r.sessions_per_replica,
         "–" if r.fps_min_at_max is None else f"{r.fps_min_at_max:g}", _gpu_cell(r), _host_cell(r)]
        for r in inputs
    ]  # fmt: skip
    lines += _table(
        ["run", "device", "profile", "flavor", "date", "git", "measured up to (sessions)", "sessions per replica (real time)",
         "fps of slowest session there", "GPU memory per extra session", "host memory per session"],
        rows,
    )  # fmt: skip
    lines.append("")
    current = {k: th[k] for k in ("fps_min", "late_frame_ratio_max", "ffd_ms_p95_realtime_max")}
    for r in inputs:
        if r.thresholds is not None and any(r.thresholds.get(k) != v for k, v in current.items()):
            used = {k: r.thresholds.get(k) for k in current}
            lines += [f"Note: {r.run} was judged with other thresholds ({used}) than the current ones ({current}).", ""]
    lines += ["## Replicas per run", ""]
    for r in inputs:
        lines += _run_section(r, users_rows, th)
    lines += [
        "## Recompute",
        "",
        "```sh",
        "ditto-capacity --results benchmarks/results/<run> --users 200                 # the plan, as text",
        "ditto-capacity --results benchmarks/results/<run> --users 200 --format yaml   # values.yaml fragment",
        "ditto-capacity --results benchmarks/results/<run> --users 200 --format set    # helm --set flags",
        "ditto-capacity --results benchmarks/results/<run> --users 200 --headroom 0.4 --max-replicas 64",
        f"{PAGE_COMMAND}                          # this page, after adding or changing results",
        "```",
        "",
        "For example: `helm upgrade --install ditto deploy/helm/ditto-triton $(ditto-capacity --results "
        f"benchmarks/results/<run> --users {example} --format set)`.",
        "",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------
# CLI


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        self.exit(2, f"ditto-capacity: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="ditto-capacity", description="Replicas and Helm values for N concurrent Ditto sessions, from benchmark results.")
    p.add_argument("--results", type=Path, default=RESULTS_ROOT,
                   help="a results.json, a run's results directory, or a directory of them (default: benchmarks/results)")  # fmt: skip
    p.add_argument("--users", type=int, default=None, help="concurrent sessions to plan for")
    p.add_argument("--headroom", type=float, default=DEFAULT_HEADROOM, help="fraction kept free below the admission limit, in [0, 1)")
    p.add_argument("--max-replicas", type=int, default=None, help="cap on replicas (GPUs) available")
    p.add_argument("--format", choices=("text", "yaml", "set"), default="text", help="text, a values.yaml fragment, or helm --set flags")
    p.add_argument("--write-page", type=Path, default=None, metavar="FILE", help="write the capacity page (markdown) to FILE")
    return p


def _text(run: CapacityInput, p: Plan) -> str:
    lines = [
        f"{run.run}: {run.device}, {run.profile} profile, {run.flavor} flavor ({run.date}, git {run.git_sha[:12]})",
        f"  sessions per replica in real time: {run.sessions_per_replica} (sweep measured up to {run.measured_up_to})",
        f"  {p.users} users, headroom {_pct(p.headroom)}: HPA target {p.hpa_target} session(s) per replica -> "
        f"{p.replicas} replica(s) = {p.replicas} GPU(s), admitting up to {p.session_capacity} sessions",
        f"  helm: {as_set_flags(helm_values(p))}",
        f"  GPU memory per replica at the limit: {_mem(p.gpu_mib_per_replica, 'MiB')}, all replicas: {_mem(p.gpu_mib_total, 'MiB')}",
        f"  host memory per replica at the limit: {_mem(p.host_mb_per_replica, 'MB')}, all replicas: {_mem(p.host_mb_total, 'MB')}",
    ]
    if not p.hpa_can_scale_up:
        lines.append(
            f"  the HPA cannot scale up on sessions (target {p.hpa_target} is too close to the limit {p.admission_limit}): "
            f"minReplicas = maxReplicas = {p.helm_max_replicas}"
        )
    if not p.fits:
        lines.append(
            f"  WARNING: {p.replicas} replicas needed but --max-replicas is {p.max_replicas}: "
            f"at most {p.max_replicas * p.admission_limit} sessions are admitted, the rest are refused"
        )
    return "\n".join(lines)


def run_cli(args: argparse.Namespace) -> str:
    """The CLI's output for parsed arguments; raises ValueError (CapacityError) on bad input."""
    inputs = load_results(args.results)
    out: list[str] = []
    if args.write_page is not None:
        args.write_page.write_text(render_page(inputs))
        out.append(f"wrote {args.write_page}")
    if args.format != "text" or args.users is not None:
        if args.users is None:
            raise ValueError(f"--format {args.format} needs --users")
        if args.format != "text" and len(inputs) > 1:
            raise ValueError(
                f"{args.results} holds {len(inputs)} runs ({', '.join(r.run for r in inputs)}); "
                f"give one with --results {args.results}/<run>"
            )
        plan(1, args.users, args.headroom, args.max_replicas)  # bad numbers fail before any run is planned
        if args.format == "text":
            for run in inputs:
                try:
                    out.append(_text(run, plan_for(run, args.users, args.headroom, args.max_replicas)))
                except CapacityError as err:
                    if len(inputs) == 1:
                        raise
                    out.append(f"{run.run}: {err}")
        else:
            values = helm_values(plan_for(inputs[0], args.users, args.headroom, args.max_replicas))
            out.append(as_yaml(values) if args.format == "yaml" else as_set_flags(values))
    elif args.write_page is None:
        for run in inputs:
            if run.sessions_per_replica < 1:
                out.append(f"{run.run}: {run.device}, {run.profile}/{run.flavor}: no real-time session (measured up to {run.measured_up_to})")
                continue
            rows = ", ".join(f"{u} users -> {plan_for(run, u, args.headroom).replicas}" for u in DEFAULT_USERS_ROWS)
            out.append(f"{run.run}: {run.device}, {run.profile}/{run.flavor}: {run.sessions_per_replica} session(s) per replica; {rows}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        text = run_cli(args)
    except (ValueError, OSError) as err:  # CapacityError included; one line
        print(f"ditto-capacity: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    if text:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
