"""`ditto-capacity`: replicas for N concurrent sessions, from benchmark results.

    ditto-capacity                                             # every committed run, a table per run
    ditto-capacity --results benchmarks/results/<run> --users 200
    ditto-capacity --results benchmarks/results/<run> --users 200 --format set   # helm --set flags
    ditto-capacity --write-page deploy/CAPACITY.md             # regenerate the capacity page

Every number it prints comes from a results file (`benchmarks/results.py`) or from the formula in
`capacity.plan()`. Bad input exits 2 with one line on stderr.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ditto_triton.benchmarks import RESULTS_DIR
from ditto_triton.benchmarks.results import BenchmarkRun, load_results
from ditto_triton.deploy.capacity import (
    DEFAULT_HEADROOM,
    DEFAULT_USERS_ROWS,
    CapacityError,
    Plan,
    as_set_flags,
    as_yaml,
    helm_values,
    plan,
    plan_for,
)
from ditto_triton.deploy.capacity_page import fmt_memory, fmt_percent, render_page


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        self.exit(2, f"ditto-capacity: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="ditto-capacity",
        description="Replicas and Helm values for N concurrent Ditto sessions, from benchmark results.",
    )
    p.add_argument("--results", type=Path, default=RESULTS_DIR,
                   help="a results.json, a run's results directory, or a directory of them (default: benchmarks/results)")  # fmt: skip
    p.add_argument("--users", type=int, default=None, help="concurrent sessions to plan for")
    p.add_argument(
        "--headroom",
        type=float,
        default=DEFAULT_HEADROOM,
        help="fraction kept free below the admission limit, in [0, 1)",
    )
    p.add_argument("--max-replicas", type=int, default=None, help="cap on replicas (GPUs) available")
    p.add_argument(
        "--format",
        choices=("text", "yaml", "set"),
        default="text",
        help="text, a values.yaml fragment, or helm --set flags",
    )
    p.add_argument(
        "--write-page", type=Path, default=None, metavar="FILE", help="write the capacity page (markdown) to FILE"
    )
    return p


def run_cli(args: argparse.Namespace) -> str:
    """The CLI's output for parsed arguments; raises ValueError (ResultsError, CapacityError) on bad input."""
    runs = load_results(args.results)
    out: list[str] = []
    if args.write_page is not None:
        args.write_page.write_text(render_page(runs))
        out.append(f"wrote {args.write_page}")
    if args.format != "text" or args.users is not None:
        out += _plans(args, runs)
    elif args.write_page is None:
        out += [_summary(run, args.headroom) for run in runs]
    return "\n".join(out)


def _plans(args: argparse.Namespace, runs: Sequence[BenchmarkRun]) -> list[str]:
    """--users: the plan of every run as text, or the Helm values of the one run given."""
    if args.users is None:
        raise ValueError(f"--format {args.format} needs --users")
    if args.format != "text" and len(runs) > 1:
        raise ValueError(
            f"{args.results} holds {len(runs)} runs ({', '.join(r.run for r in runs)}); "
            f"give one with --results {args.results}/<run>"
        )
    plan(1, args.users, args.headroom, args.max_replicas)  # bad numbers fail before any run is planned
    if args.format != "text":
        values = helm_values(plan_for(runs[0], args.users, args.headroom, args.max_replicas))
        return [as_yaml(values) if args.format == "yaml" else as_set_flags(values)]
    out = []
    for run in runs:
        try:
            out.append(_text(run, plan_for(run, args.users, args.headroom, args.max_replicas)))
        except CapacityError as err:
            if len(runs) == 1:
                raise
            out.append(f"{run.run}: {err}")
    return out


def _summary(run: BenchmarkRun, headroom: float) -> str:
    """One line per run: its sessions per replica and the replicas for the page's user counts."""
    if run.sessions_per_replica < 1:
        return f"{run.run}: {run.device}, {run.profile}/{run.flavor}: no real-time session (measured up to {run.measured_up_to})"
    rows = ", ".join(f"{u} users -> {plan_for(run, u, headroom).replicas}" for u in DEFAULT_USERS_ROWS)
    return f"{run.run}: {run.device}, {run.profile}/{run.flavor}: {run.sessions_per_replica} session(s) per replica; {rows}"


def _text(run: BenchmarkRun, p: Plan) -> str:
    lines = [
        f"{run.run}: {run.device}, {run.profile} profile, {run.flavor} flavor ({run.date}, git {run.git_sha[:12]})",
        f"  sessions per replica in real time: {run.sessions_per_replica} (sweep measured up to {run.measured_up_to})",
        f"  {p.users} users, headroom {fmt_percent(p.headroom)}: HPA target {p.hpa_target} session(s) per replica -> "
        f"{p.replicas} replica(s) = {p.replicas} GPU(s), admitting up to {p.session_capacity} sessions",
        f"  helm: {as_set_flags(helm_values(p))}",
        f"  GPU memory per replica at the limit: {fmt_memory(p.gpu_mib_per_replica, 'MiB')}, "
        f"all replicas: {fmt_memory(p.gpu_mib_total, 'MiB')}",
        f"  host memory per replica at the limit: {fmt_memory(p.host_mb_per_replica, 'MB')}, "
        f"all replicas: {fmt_memory(p.host_mb_total, 'MB')}",
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        text = run_cli(args)
    except (ValueError, OSError) as err:  # ResultsError and CapacityError included; one line
        print(f"ditto-capacity: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    if text:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
