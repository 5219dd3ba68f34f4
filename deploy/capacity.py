"""The capacity plan: replicas and Helm values for N concurrent sessions, from a replica's measured capacity.

A replica is one tritonserver with one GPU; a live session is one gRPC stream whose state stays on the
replica it started on, so capacity is counted in concurrent sessions per replica. The benchmark suite's
Locust session sweep (`make bench`, `make bench-gpu`) measures how many sessions one replica keeps in real
time (`max_realtime_sessions` in results.json, read by `benchmarks/results.py`); `plan()` turns that into an
admission limit (`sessions.maxPerReplica`, the container's DITTO_MAX_SESSIONS), an HPA target below it
(`autoscaling.targetSessionsPerReplica`) and a replica count. The page is `capacity_page.py`, the command
`capacity_cli.py`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ditto_triton.benchmarks.results import BenchmarkRun, ResultsError

DEFAULT_HEADROOM = 0.25
DEFAULT_USERS_ROWS = (10, 50, 100, 500, 1000)
HPA_TOLERANCE = 0.1  # Kubernetes' default --horizontal-pod-autoscaler-tolerance: no scaling within ±10 % of the target


class CapacityError(ResultsError):
    """Nothing to plan: no run given, or a run where not one session stayed real time (the message names its file)."""


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
    _check_plan_arguments(sessions_per_replica, users, headroom, max_replicas)
    # the epsilon keeps 10 × (1 − 0.8), 1.999… in floating point, from flooring to 1
    target = max(1, math.floor(sessions_per_replica * (1.0 - headroom) + 1e-9))
    return Plan(
        users=users, sessions_per_replica=sessions_per_replica, headroom=float(headroom),
        target_sessions_per_replica=target, replicas=math.ceil(users / target), max_replicas=max_replicas,
        gpu_mib_per_session=gpu_mib_per_session, gpu_mib_base=gpu_mib_base,
        host_mb_per_session=host_mb_per_session, host_mb_base=host_mb_base,
    )  # fmt: skip


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_plan_arguments(sessions_per_replica: Any, users: Any, headroom: Any, max_replicas: Any) -> None:
    """ValueError naming the first argument of `plan()` that makes no sense."""
    if not _is_int(sessions_per_replica) or sessions_per_replica < 1:
        raise ValueError(f"sessions_per_replica must be an integer >= 1, got {sessions_per_replica!r}")
    if not _is_int(users) or users < 0:
        raise ValueError(f"users must be an integer >= 0, got {users!r}")
    if isinstance(headroom, bool) or not isinstance(headroom, int | float) or not 0.0 <= headroom < 1.0:
        raise ValueError(f"headroom must be in [0, 1), got {headroom!r}")
    if max_replicas is not None and (not _is_int(max_replicas) or max_replicas < 1):
        raise ValueError(f"max_replicas must be an integer >= 1 or None, got {max_replicas!r}")


def plan_for(
    run: BenchmarkRun, users: int, headroom: float = DEFAULT_HEADROOM, max_replicas: int | None = None
) -> Plan:
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
