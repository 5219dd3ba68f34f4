"""Where and with what a benchmark ran: device, host, library versions, git commit."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import os
import platform
import shutil
import socket
import subprocess
from pathlib import Path

from ditto_triton.benchmarks import DATA_DIR

PACKAGES = (
    "tritonclient",
    "nvidia-pytriton",
    "onnxruntime",
    "torch",
    "onnx",
    "numpy",
    "locust",
    "grpcio",
    "matplotlib",
)


def _run(cmd: list[str], cwd: Path | None = None) -> str | None:
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def detect_device() -> str:
    """GPU names from `nvidia-smi` when it answers, else the CPU model and core count."""
    if shutil.which("nvidia-smi"):
        names = _run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"])
        if names:
            gpus = [n.strip() for n in names.splitlines() if n.strip()]
            return f"{len(gpus)}x {gpus[0]}" if len(set(gpus)) == 1 else ", ".join(gpus)
    return f"{cpu_model()} ({os.cpu_count()} cores)"


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            out[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def git_sha() -> str | None:
    """HEAD's commit, with "-dirty" when the work tree has changes; None outside a git checkout."""
    sha = _run(["git", "rev-parse", "HEAD"], DATA_DIR)
    if sha is None:
        return None
    status = _run(["git", "status", "--porcelain", "--untracked-files=no"], DATA_DIR)
    return f"{sha}-dirty" if status else sha


def host() -> str:
    return socket.gethostname().split(".")[0] or "host"


def today() -> str:
    return dt.date.today().isoformat()


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def stamped(export_dir: Path, result: dict) -> dict:
    """`result` after the fields every committed result starts with: export, profile, device, date, commit."""
    import json

    profile = json.loads((Path(export_dir) / "manifest.json").read_text())["profile"]
    head = {"export": str(export_dir), "profile": profile, "device": detect_device(), "date": today()}
    return {**head, "git_sha": git_sha(), **result}


def print_or_write(result: dict, out: Path | None) -> None:
    """Print `result` as JSON, and write it to `out` when given."""
    import json

    text = json.dumps(result, indent=2)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
    print(text)
