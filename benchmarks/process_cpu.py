"""CPU seconds of processes and threads from /proc (through psutil): what a serving process and each of
its python stubs spent, exited threads included (a process's own user + system time counts them)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import psutil

STUB_BINARY = "triton_python_backend_stub"


def process_label(proc: psutil.Process) -> str:
    """`tritonserver`, `stub:<model>` for a python backend stub (its first argument is the model's
    `<repo>/<model>/<version>/model.py`), else the executable's name."""
    cmdline = proc.cmdline()
    if cmdline and Path(cmdline[0]).name == STUB_BINARY and len(cmdline) > 1:
        return "stub:" + Path(cmdline[1]).parent.parent.name
    return Path(cmdline[0]).name if cmdline else proc.name()


def server_processes(pid: int) -> dict[str, psutil.Process]:
    """{label: process} of a tritonserver and every process under it (its python stubs)."""
    root = psutil.Process(pid)
    found = {}
    for proc in [root, *root.children(recursive=True)]:
        try:
            found[process_label(proc)] = proc
        except psutil.NoSuchProcess:
            continue
    return found


def cpu_seconds(proc: psutil.Process) -> float:
    """User + system seconds of the whole process, threads that have exited included (0 once gone)."""
    try:
        times = proc.cpu_times()
    except psutil.NoSuchProcess:
        return 0.0
    return times.user + times.system


def total_cpu_seconds(procs: Iterable[psutil.Process]) -> float:
    return sum(cpu_seconds(p) for p in procs)


def snapshot(procs: Mapping[str, psutil.Process]) -> dict[str, float]:
    """{label: CPU seconds so far}."""
    return {label: cpu_seconds(proc) for label, proc in procs.items()}


def thread_cpu_seconds(pid: int, tids: Iterable[int]) -> float:
    """User + system seconds of the given threads of `pid` (those that have exited count 0)."""
    live = {t.id: t.user_time + t.system_time for t in psutil.Process(pid).threads()}
    return sum(live.get(tid, 0.0) for tid in tids)


def thread_ids(pid: int) -> set[int]:
    return {t.id for t in psutil.Process(pid).threads()}
